#pragma once
// Checked int64 arithmetic for sizes that come from files and options: an overflow is an xntk::Error that
// names the quantity, never a wrapped or undefined value that surfaces later as a negative shape or a
// "vector larger than max_size()".

#include <cstdint>
#include <string>
#include <string_view>

#include "xntk/error.hpp"

namespace xntk::detail {

/// a · b; xntk::Error naming `what` ("the number of elements of shape (…)") if it does not fit in int64.
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw Error(std::string(what) + " overflows 64-bit integers (" + std::to_string(a) + " × " + std::to_string(b) +
                ")");
  return r;
}

/// a + b; xntk::Error naming `what` if it does not fit in int64.
inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    throw Error(std::string(what) + " overflows 64-bit integers (" + std::to_string(a) + " + " + std::to_string(b) +
                ")");
  return r;
}

/// A tensor that would not fit in memory, refused before it is allocated (a size from a file can ask for more
/// than any machine has; allocating it would fail with a library message naming nothing, or succeed on
/// overcommitted memory and be killed while it is filled). Callers catch it to say what the tensor was for.
class TooLarge : public Error {
 public:
  using Error::Error;
};

/// The most bytes one Tensor may take; 0 (the default): 90% of the memory the system reports as available,
/// consulted only for tensors of 256 MiB and more. Fuzz harnesses and tests set a small limit.
void set_tensor_byte_limit(double bytes);

}  // namespace xntk::detail
