// Model weights as safetensors: the nn.Sequential state_dict names ("3.weight"), each parameter present once
// with its exact shape and finite values.

#include <algorithm>
#include <cmath>

#include "quote.hpp"
#include "xntk/io.hpp"

namespace xntk {

template <class T>
void load_weights(Sequential<T>& model, const std::string& path) {
  auto tensors = read_safetensors<T>(path);
  const auto params = model.named_parameters();
  // the model comes from a file too: a model of thousands of layers lists its first parameters only
  std::string expected;
  for (size_t i = 0; i < params.size() && i < 8; ++i) expected += (i ? ", " : "") + params[i].name;
  if (params.size() > 8) expected += ", ... (" + std::to_string(params.size()) + " in all)";
  // Validate everything before changing the model, so that a bad file leaves it as it was.
  std::vector<const Tensor<T>*> source(params.size(), nullptr);
  for (const auto& t : tensors) {
    const auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.name == t.name; });
    if (it == params.end())
      throw Error(path + ": unexpected tensor " + detail::quote(t.name) + "; the model's parameters are " +
                  (expected.empty() ? "none" : expected));
    const size_t i = static_cast<size_t>(it - params.begin());
    if (t.tensor.shape() != it->tensor->shape())
      throw Error(path + ": tensor \"" + t.name + "\" has shape " + to_string(t.tensor.shape()) + ", expected " +
                  to_string(it->tensor->shape()) + " for layer " + t.name.substr(0, t.name.find('.')) + " (" +
                  type_name(model.spec().layers.at(std::stoul(t.name))) + ")");
    for (int64_t e = 0; e < t.tensor.size(); ++e)
      if (!std::isfinite(static_cast<double>(t.tensor[e])))
        throw Error(path + ": tensor \"" + t.name + "\" holds a non-finite value (" + std::to_string(t.tensor[e]) +
                    ") at flat index " + std::to_string(e) + "; expected finite weights");
    source[i] = &t.tensor;
  }
  for (size_t i = 0; i < params.size(); ++i)
    if (!source[i])
      throw Error(path + ": missing tensor \"" + params[i].name + "\" of shape " +
                  to_string(params[i].tensor->shape()) + " (the model's parameters are " + expected + ")");
  for (size_t i = 0; i < params.size(); ++i) *params[i].tensor = *source[i];
}

template <class T>
void save_weights(const Sequential<T>& model, const std::string& path) {
  std::vector<NamedTensor<T>> tensors;
  for (const auto& p : model.named_parameters()) tensors.push_back({p.name, *p.tensor});
  write_safetensors(path, tensors);
}

template void load_weights(Sequential<float>&, const std::string&);
template void load_weights(Sequential<double>&, const std::string&);
template void save_weights(const Sequential<float>&, const std::string&);
template void save_weights(const Sequential<double>&, const std::string&);

}  // namespace xntk
