#pragma once
// The checksum that ties a components file to its kernel file (docs/cli.md, xntk analyze): FNV-1a over the
// kernel's values, one step per value on the integer of its IEEE-754 bits, so that it does not depend on
// the byte order or the memory order (C or Fortran) the .npy stores them in.

#include <bit>
#include <cstdint>
#include <cstdio>
#include <string>

#include "xntk/tensor.hpp"

namespace xntk::detail {

/// h = 14695981039346656037; for each value in C order, h = (h xor bits(value)) · 1099511628211 mod 2^64,
/// bits the value's float32 or float64 representation (U = float or double).
template <class U, class T>
uint64_t values_checksum(const Tensor<T>& t) {
  using Bits = std::conditional_t<sizeof(U) == 4, uint32_t, uint64_t>;
  uint64_t h = 14695981039346656037ull;
  for (int64_t i = 0; i < t.size(); ++i) h = (h ^ std::bit_cast<Bits>(static_cast<U>(t[i]))) * 1099511628211ull;
  return h;
}

/// The checksum of a kernel as its file stores it (`itemsize` 4: float32, 8: float64), as written in the
/// components' metadata: "fnv1a64:" and 16 hexadecimal digits.
template <class T>
std::string kernel_checksum(const Tensor<T>& kernel, int itemsize) {
  const uint64_t h = itemsize == 4 ? values_checksum<float>(kernel) : values_checksum<double>(kernel);
  char buf[32];
  std::snprintf(buf, sizeof buf, "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace xntk::detail
