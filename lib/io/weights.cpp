// Model weights as safetensors under the model's state_dict names ("3.weight", "layer1.0.bn1.running_var"): each
// parameter present once with its exact shape and finite values; buffers (BatchNorm's running statistics) optional.

#include <algorithm>
#include <cmath>

#include "io/safetensors.hpp"
#include "nn/model.hpp"
#include "quote.hpp"
#include "xntk/io.hpp"

namespace xntk {

template <class T>
void load_weights(Sequential<T>& model, const std::string& path) {
  std::vector<bool> integer;
  auto tensors = detail::read_safetensors_typed<T>(path, integer);
  const auto params = model.named_parameters();
  const auto buffers = model.named_buffers();
  // the model comes from a file too: a model of thousands of layers lists its first names only
  auto listed = [](const std::vector<NamedParameter<T>>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i].name;
    if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  const std::string expected = listed(params), expected_buffers = listed(buffers);
  // the layer a name belongs to, for messages: the name without its last component
  auto layer_of = [&](const std::string& name) {
    const std::string module = name.substr(0, name.rfind('.') == std::string::npos ? 0 : name.rfind('.'));
    std::string type;
    model.impl().root->for_each([&](const nn::Layer<T>& l) {
      if (l.leaf() && l.path() == module) type = l.type();
    });
    return "layer " + (module.empty() ? std::string("(the model)") : module) + (type.empty() ? "" : " (" + type + ")");
  };
  // Validate everything before changing the model, so that a bad file leaves it as it was. Parameters must all
  // be present; buffers may be absent (they keep their defaults, e.g. running_mean 0 and running_var 1).
  std::vector<const Tensor<T>*> source(params.size(), nullptr), buffer_source(buffers.size(), nullptr);
  for (size_t k = 0; k < tensors.size(); ++k) {
    const NamedTensor<T>& t = tensors[k];
    const auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.name == t.name; });
    const auto bt = std::find_if(buffers.begin(), buffers.end(), [&](const auto& b) { return b.name == t.name; });
    if (it == params.end() && bt == buffers.end())
      throw Error(path + ": unexpected tensor " + detail::quote(t.name) + "; the model's parameters are " +
                  (expected.empty() ? "none" : expected) +
                  (expected_buffers.empty() ? "" : " and its buffers " + expected_buffers));
    const Tensor<T>& target = it != params.end() ? *it->tensor : *bt->tensor;
    // integers only where PyTorch stores them: a count (BatchNorm's num_batches_tracked), never a parameter
    if (integer[k] && (it != params.end() || !t.name.ends_with("num_batches_tracked")))
      throw Error(path + ": tensor \"" + t.name + "\" has dtype I64, expected F32 or F64 for " + layer_of(t.name) +
                  " (integer tensors are read only for num_batches_tracked)");
    if (t.tensor.shape() != target.shape())
      throw Error(path + ": tensor \"" + t.name + "\" has shape " + to_string(t.tensor.shape()) + ", expected " +
                  to_string(target.shape()) + " for " + layer_of(t.name));
    for (int64_t e = 0; e < t.tensor.size(); ++e)
      if (!std::isfinite(static_cast<double>(t.tensor[e])))
        throw Error(path + ": tensor \"" + t.name + "\" holds a non-finite value (" + std::to_string(t.tensor[e]) +
                    ") at flat index " + std::to_string(e) + "; expected finite " +
                    (it != params.end() ? "weights" : "values"));
    if (it != params.end())
      source[static_cast<size_t>(it - params.begin())] = &t.tensor;
    else
      buffer_source[static_cast<size_t>(bt - buffers.begin())] = &t.tensor;
  }
  for (size_t i = 0; i < params.size(); ++i)
    if (!source[i])
      throw Error(path + ": missing tensor \"" + params[i].name + "\" of shape " +
                  to_string(params[i].tensor->shape()) + " (the model's parameters are " + expected + ")");
  for (size_t i = 0; i < buffers.size(); ++i)
    if (buffer_source[i] && buffers[i].name.ends_with("running_var"))
      for (int64_t e = 0; e < buffer_source[i]->size(); ++e)
        if ((*buffer_source[i])[e] < 0)
          throw Error(path + ": tensor \"" + buffers[i].name + "\" holds a negative variance (" +
                      std::to_string((*buffer_source[i])[e]) + ") at flat index " + std::to_string(e) +
                      "; expected running_var >= 0");
  for (size_t i = 0; i < params.size(); ++i) *params[i].tensor = *source[i];
  for (size_t i = 0; i < buffers.size(); ++i)
    if (buffer_source[i]) *buffers[i].tensor = *buffer_source[i];
}

template <class T>
void save_weights(const Sequential<T>& model, const std::string& path) {
  std::vector<NamedTensor<T>> tensors;
  // state_dict order: each module's parameters, then its buffers
  model.impl().root->for_each([&](const nn::Layer<T>& l) {
    if (!l.leaf()) return;
    for (const auto& p : l.leaf()->parameters()) tensors.push_back({p.name, *p.tensor});
    for (const auto& b : l.leaf()->buffers()) tensors.push_back({b.name, *b.tensor});
  });
  write_safetensors(path, tensors);
}

template void load_weights(Sequential<float>&, const std::string&);
template void load_weights(Sequential<double>&, const std::string&);
template void save_weights(const Sequential<float>&, const std::string&);
template void save_weights(const Sequential<double>&, const std::string&);

}  // namespace xntk
