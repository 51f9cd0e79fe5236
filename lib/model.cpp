#include "xntk/model.hpp"

#include <set>

#include "batch.hpp"
#include "nn/build.hpp"
#include "nn/model.hpp"
#include "random.hpp"

namespace xntk {

const char* name(Parameterization p) { return p == Parameterization::ntk ? "ntk" : "standard"; }

const char* name(ConvMethod method) {
  switch (method) {
    case ConvMethod::automatic: return "auto";
    case ConvMethod::gradients: return "gradients";
    case ConvMethod::positions: return "positions";
  }
  return "?";
}

const char* name(ConvPadding padding) {
  switch (padding) {
    case ConvPadding::sizes: return "sizes";
    case ConvPadding::valid: return "valid";
    case ConvPadding::same: return "same";
  }
  return "?";
}

ConvPaddingSizes padding_sizes(const Conv2d& conv) {
  switch (conv.padding_rule) {
    case ConvPadding::valid: return {Size2(0), Size2(0)};
    case ConvPadding::same: {
      // PyTorch (_convolution_mode): the total d·(k − 1), its lower half before, the rest after
      const int64_t th = conv.dilation.h * (conv.kernel_size.h - 1), tw = conv.dilation.w * (conv.kernel_size.w - 1);
      return {Size2(th / 2, tw / 2), Size2(th - th / 2, tw - tw / 2)};
    }
    default: return {conv.padding, conv.padding};
  }
}

const char* name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::relu: return "relu";
    case ActivationKind::leaky_relu: return "leaky_relu";
    case ActivationKind::tanh: return "tanh";
    case ActivationKind::sigmoid: return "sigmoid";
    case ActivationKind::gelu: return "gelu";
    case ActivationKind::erf: return "erf";
    case ActivationKind::softplus: return "softplus";
    case ActivationKind::silu: return "silu";
    case ActivationKind::elu: return "elu";
    case ActivationKind::identity: return "identity";
  }
  return "?";
}

std::vector<ActivationKind> all_activation_kinds() {
  using K = ActivationKind;
  return {K::relu, K::leaky_relu, K::tanh, K::sigmoid, K::gelu, K::erf, K::softplus, K::silu, K::elu, K::identity};
}

std::string type_name(const LayerSpec& layer) {
  struct Visitor {
    std::string operator()(const Linear&) { return "linear"; }
    std::string operator()(const Conv2d&) { return "conv2d"; }
    std::string operator()(const AvgPool2d&) { return "avgpool2d"; }
    std::string operator()(const MaxPool2d&) { return "maxpool2d"; }
    std::string operator()(const GlobalAvgPool&) { return "global_avgpool"; }
    std::string operator()(const AdaptiveAvgPool2d&) { return "adaptive_avgpool2d"; }
    std::string operator()(const Flatten&) { return "flatten"; }
    std::string operator()(const Activation& a) { return name(a.kind); }
    std::string operator()(const BatchNorm2d&) { return "batchnorm2d"; }
    std::string operator()(const BatchNorm1d&) { return "batchnorm1d"; }
    std::string operator()(const LayerNorm&) { return "layernorm"; }
    std::string operator()(const Residual&) { return "residual"; }
    std::string operator()(const SequentialBlock&) { return "sequential"; }
  };
  return std::visit(Visitor{}, static_cast<const LayerVariant&>(layer));
}

template <class T>
Sequential<T>::Sequential(ModelSpec spec, uint64_t seed) : Sequential(std::move(spec), seed, true) {}

template <class T>
Sequential<T> Sequential<T>::copy() const {
  Sequential<T> c(spec_, 0, false);  // every parameter and buffer is overwritten below
  const auto from = named_parameters(), to = c.named_parameters();
  for (size_t i = 0; i < from.size(); ++i) *to[i].tensor = *from[i].tensor;
  const auto bfrom = named_buffers(), bto = c.named_buffers();
  for (size_t i = 0; i < bfrom.size(); ++i) *bto[i].tensor = *bfrom[i].tensor;
  return c;
}

template <class T>
Sequential<T>::Sequential(ModelSpec spec, uint64_t seed, bool draw)
    : spec_(std::move(spec)), impl_(std::make_unique<Impl>()) {
  if (spec_.input.empty()) throw Error("model: input shape is empty; expected e.g. (784) or (3, 32, 32)");
  for (int64_t d : spec_.input)
    if (d <= 0) throw Error("model: input shape " + to_string(spec_.input) + " must have positive dimensions");
  if (spec_.layers.empty()) throw Error("model: no layers");
  detail::Rng rng(seed, draw);
  int nodes = 0;
  impl_->root = nn::build_sequence<T>(spec_.layers, "", spec_.input, spec_.parameterization, rng, nodes);
  impl_->nodes = nodes;
  impl_->root->for_each([&](const nn::Layer<T>& l) {
    if (l.leaf() && !l.leaf()->parameters().empty()) impl_->owners.push_back(l.leaf());
    if (l.leaf() && !l.leaf()->buffers().empty()) impl_->buffer_owners.push_back(l.leaf());
  });
  // names are the state_dict's keys: with module names (LayerSpec::name) two could coincide
  std::set<std::string> seen;
  for (const auto& t : named_parameters())
    if (!seen.insert(t.name).second)
      throw Error("model: two parameters are named \"" + t.name + "\"; expected layer names unique within a block");
  for (const auto& t : named_buffers())
    if (!seen.insert(t.name).second)
      throw Error("model: two tensors are named \"" + t.name + "\"; expected layer names unique within a block");
  // component order: the modules that own parameters in state_dict order, reversed, weight before bias
  for (auto it = impl_->owners.rbegin(); it != impl_->owners.rend(); ++it) {
    const_cast<nn::Leaf<T>*>(*it)->set_component_slot(static_cast<int>(impl_->component_names.size()));
    for (const auto& p : (*it)->parameters()) impl_->component_names.push_back(p.name);
  }
}

template <class T>
Sequential<T>::~Sequential() = default;
template <class T>
Sequential<T>::Sequential(Sequential&&) noexcept = default;
template <class T>
Sequential<T>& Sequential<T>::operator=(Sequential&&) noexcept = default;

template <class T>
const Shape& Sequential<T>::output_shape() const {
  return impl_->root->out_shape();
}

template <class T>
int64_t Sequential<T>::outputs() const {
  return numel(output_shape());
}

template <class T>
int Sequential<T>::num_layers() const {
  return static_cast<int>(impl_->root->children().size());
}

template <class T>
const Shape& Sequential<T>::layer_output_shape(int i) const {
  if (i < 0 || i >= num_layers())
    throw Error("model: layer index " + std::to_string(i) + " out of range [0, " + std::to_string(num_layers()) + ")");
  return impl_->root->children()[static_cast<size_t>(i)]->out_shape();
}

template <class T>
std::vector<NamedParameter<T>> Sequential<T>::named_parameters() const {
  std::vector<NamedParameter<T>> all;
  for (const auto* l : impl_->owners)
    for (auto& p : l->parameters()) all.push_back(p);
  return all;
}

template <class T>
Tensor<T>& Sequential<T>::parameter(std::string_view name) const {
  for (const auto& p : named_parameters())
    if (p.name == name) return *p.tensor;
  throw Error("model: no parameter named \"" + std::string(name) + "\"");
}

template <class T>
std::vector<NamedParameter<T>> Sequential<T>::named_buffers() const {
  std::vector<NamedParameter<T>> all;
  for (const auto* l : impl_->buffer_owners)
    for (auto& b : l->buffers()) all.push_back(b);
  return all;
}

template <class T>
Tensor<T>& Sequential<T>::buffer(std::string_view name) const {
  for (const auto& b : named_buffers())
    if (b.name == name) return *b.tensor;
  throw Error("model: no buffer named \"" + std::string(name) + "\"");
}

template <class T>
int64_t Sequential<T>::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : named_parameters()) n += p.tensor->size();
  return n;
}

template <class T>
std::pair<double, double> Sequential<T>::multipliers(int i) const {
  layer_output_shape(i);  // range check
  const auto* leaf = impl_->root->children()[static_cast<size_t>(i)]->leaf();
  return leaf ? leaf->multipliers() : std::pair<double, double>{0.0, 0.0};
}

template <class T>
const std::vector<std::string>& Sequential<T>::component_names() const {
  return impl_->component_names;
}

template <class T>
Tensor<T> Sequential<T>::forward(TensorRef<T> x) const {
  const int64_t n = detail::check_batch(*this, x, "forward: input");
  nn::Context<T> cx(backend::get("cpu"));
  nn::Values<T> values(cx, impl_->nodes, false);
  const T* y = impl_->root->forward(cx, values, x.data(), n);
  Shape out{n};
  out.insert(out.end(), output_shape().begin(), output_shape().end());
  return Tensor<T>(out, std::vector<T>(y, y + n * outputs()));
}

template class Sequential<float>;
template class Sequential<double>;

int64_t check_batch(const Shape& input, const Shape& batch, const std::string& what, const std::string& samples) {
  const bool fits = batch.size() == input.size() + 1 && std::equal(input.begin(), input.end(), batch.begin() + 1);
  if (!fits) {
    std::string expected = "(" + samples;
    for (const int64_t d : input) expected += ", " + std::to_string(d);
    throw Error(what + " has shape " + to_string(batch) + ", expected " + expected + ") for the model's input " +
                to_string(input));
  }
  if (batch[0] < 1) throw Error(what + " has no samples (shape " + to_string(batch) + ")");
  return batch[0];
}

}  // namespace xntk
