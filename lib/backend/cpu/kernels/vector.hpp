// Vector registers of T as GCC/Clang vector types, for the kernels written with them (their arithmetic
// compiles to the variant's registers: AVX-512's, or pairs of narrower ones). Included inside the ISA
// region by variant.inc; prelude.hpp provides the includes.

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

/// The vector registers of this variant: 32 of 64 bytes with AVX-512, otherwise 16 of (at most) 32 bytes.
/// Kernels whose register tiles need 32 registers are taken automatically only where there are 32.
#if XNTK_CPU_ISA >= 3
inline constexpr int kVectorRegisters = 32, kRegisterBytes = 64;
#elif XNTK_CPU_ISA >= 2
inline constexpr int kVectorRegisters = 16, kRegisterBytes = 32;
#else
inline constexpr int kVectorRegisters = 16, kRegisterBytes = 16;
#endif
