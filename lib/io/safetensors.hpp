#pragma once
// The safetensors reader's view for the weights loader: which tensors the file stored as integers.

#include <string>
#include <vector>

#include "xntk/io.hpp"

namespace xntk::detail {

/// read_safetensors, and for each tensor (in the same order) whether the file stored it as integers (I64),
/// which the loader accepts only where PyTorch stores a count (num_batches_tracked).
template <class T>
std::vector<NamedTensor<T>> read_safetensors_typed(const std::string& path, std::vector<bool>& integer);

}  // namespace xntk::detail
