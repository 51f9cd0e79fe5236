#include "cli/inputs.hpp"

#include <cmath>
#include <optional>
#include <type_traits>

#include "xntk/io.hpp"

namespace xntk::cli {
namespace {

template <class T>
Tensor<T> check_finite(Tensor<T> x, const std::string& path, const char* option) {
  for (int64_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(x[i])) continue;
    std::string what = std::isnan(x[i]) ? "NaN" : "Inf";
    if constexpr (std::is_same_v<T, float>) {
      const double original = read_npy<double>(path)[i];
      if (std::isfinite(original)) what = std::to_string(original) + ", which overflows float32";
    }
    throw Error(path + " (" + option + "): holds " + what + " at flat index " + std::to_string(i) +
                "; expected finite values");
  }
  return x;
}

}  // namespace

template <class T>
Tensor<T> read_data(const std::string& path, const char* option) {
  return check_finite(read_npy<T>(path), path, option);
}

template <class T>
Tensor<T> read_targets(const std::string& path, const char* option) {
  return check_finite(read_npy_labels<T>(path), path, option);
}

template <class T>
Sequential<T> load_model(const std::string& model_path, const std::string& weights_path, uint64_t seed) {
  const ModelSpec spec = load_model_spec(model_path);
  std::optional<Sequential<T>> model;
  try {
    model.emplace(spec, seed);
  } catch (const Error& e) {
    throw Error(model_path + ": " + e.what());
  }
  if (!weights_path.empty()) load_weights(*model, weights_path);
  return std::move(*model);
}

template Tensor<float> read_data(const std::string&, const char*);
template Tensor<double> read_data(const std::string&, const char*);
template Tensor<float> read_targets(const std::string&, const char*);
template Tensor<double> read_targets(const std::string&, const char*);
template Sequential<float> load_model(const std::string&, const std::string&, uint64_t);
template Sequential<double> load_model(const std::string&, const std::string&, uint64_t);

}  // namespace xntk::cli
