#pragma once
/// \file error.hpp
/// The one exception type xntk throws for bad input (shapes, arguments, files).

#include <stdexcept>
#include <string>

namespace xntk {

/// Raised for every invalid argument, shape mismatch or malformed file. The message names the layer,
/// field or file, what was expected and what was given.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace xntk
