#pragma once
// The checksum that ties a components file to its kernel file (docs/cli.md, xntk analyze): a sum over the
// kernel's values of a mix of each value's position (in C order) and its IEEE-754 bits, so that it does not
// depend on the byte order or the memory order (C or Fortran) the .npy stores them in, nor on the order in
// which a writer produces the values (the file sink writes the kernel block by block).

#include <bit>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

#include "xntk/tensor.hpp"

namespace xntk::detail {

/// The term of value bits `bits` at C-order position `index`: SplitMix64's finaliser of
/// bits + (index + 1) · 0x9E3779B97F4A7C15 (mod 2^64).
inline uint64_t checksum_term(uint64_t index, uint64_t bits) {
  uint64_t z = bits + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The bits of v as stored in a file of `itemsize` 4 (float32) or 8 (float64).
template <class T>
uint64_t stored_bits(T v, int itemsize) {
  return itemsize == 4 ? std::bit_cast<uint32_t>(static_cast<float>(v))
                       : std::bit_cast<uint64_t>(static_cast<double>(v));
}

/// "mix64:" and the 16 hexadecimal digits of h.
inline std::string format_checksum(uint64_t h) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "mix64:%016llx", static_cast<unsigned long long>(h));
  return buf;
}

/// The checksum of a kernel as its file stores it (`itemsize` 4: float32, 8: float64), as written in the
/// components' metadata: the sum mod 2^64 of checksum_term(i, bits of value i) over the values in C order.
template <class T>
std::string kernel_checksum(const T* values, int64_t count, int itemsize) {
  uint64_t h = 0;
  for (int64_t i = 0; i < count; ++i) h += checksum_term(static_cast<uint64_t>(i), stored_bits(values[i], itemsize));
  return format_checksum(h);
}

template <class T>
std::string kernel_checksum(const Tensor<T>& kernel, int itemsize) {
  return kernel_checksum(kernel.data(), kernel.size(), itemsize);
}

}  // namespace xntk::detail
