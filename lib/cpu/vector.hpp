#pragma once
// Vector registers of T as GCC/Clang vector types, for the few kernels written with them
// (their arithmetic compiles to AVX-512 or, without it, to pairs of narrower registers).

#include <cstdint>

namespace xntk::detail {

/// A vector of Bytes / sizeof(T) values of T (Bytes: 32 for AVX2, 64 for AVX-512 registers).
template <class T, int Bytes = 64>
struct Vec {
  typedef T type __attribute__((vector_size(Bytes)));
};

/// Values per 64-byte vector.
template <class T>
inline constexpr int64_t kLanes = 64 / sizeof(T);

}  // namespace xntk::detail
