#pragma once
// Vector registers of T as GCC/Clang vector types, for the few kernels written with them
// (their arithmetic compiles to AVX-512 or, without it, to pairs of narrower registers).

#include <cstdint>

// The kernels built on these vectors (skinny, masked_product, conv_backward) are compiled for the
// instruction set of each translation unit: the library with -march=native, a program that includes
// them without it for less. Each set gets an inline namespace of its own, so two builds' templates
// never share a mangled name (and the linker never swaps one for the other).
#if defined(__AVX512F__)
#define XNTK_ISA isa_avx512
#elif defined(__AVX2__)
#define XNTK_ISA isa_avx2
#else
#define XNTK_ISA isa_generic
#endif

namespace xntk::detail {

/// A vector of Bytes / sizeof(T) values of T (Bytes: 32 for AVX2, 64 for AVX-512 registers).
template <class T, int Bytes = 64>
struct Vec {
  typedef T type __attribute__((vector_size(Bytes)));
};

/// Values per 64-byte vector.
template <class T>
inline constexpr int64_t kLanes = 64 / sizeof(T);

/// Calls f.template operator()<R>() with R = rows, for First ≤ rows ≤ Last (Last for anything above), so
/// that a kernel's register tile can be sized by a row count known only at run time.
template <int First, int Last, class F>
void with_rows(int64_t rows, F&& f) {
  if constexpr (First < Last)
    if (rows != First) return with_rows<First + 1, Last>(rows, f);
  f.template operator()<First>();
}

inline namespace XNTK_ISA {

/// The vector registers of the instruction set this translation unit is built for: 32 of 64 bytes with
/// AVX-512, otherwise 16 of (at most) 32 bytes. Kernels whose register tiles need 32 registers are
/// compiled in only where kVectorRegisters is 32.
#if defined(__AVX512F__)
inline constexpr int kVectorRegisters = 32, kRegisterBytes = 64;
#else
inline constexpr int kVectorRegisters = 16, kRegisterBytes = 32;
#endif

}  // namespace XNTK_ISA

}  // namespace xntk::detail
