#pragma once
// What the subcommands read alike: data files checked to be finite, targets that may be integer labels, and
// a model from its JSON, weights or seed, each error naming the file and the option.

#include <cstdint>
#include <string>

#include "xntk/model.hpp"
#include "xntk/tensor.hpp"

namespace xntk::cli {

/// A .npy of floats read as T, every value finite in T; xntk::Error naming the file and `option` otherwise.
template <class T>
Tensor<T> read_data(const std::string& path, const char* option);

/// As read_data, and also integer arrays (class labels, read_npy_labels).
template <class T>
Tensor<T> read_targets(const std::string& path, const char* option);

/// The model of `model_path` with the weights of `weights_path` (or, when empty, initialised from `seed`).
template <class T>
Sequential<T> load_model(const std::string& model_path, const std::string& weights_path, uint64_t seed);

}  // namespace xntk::cli
