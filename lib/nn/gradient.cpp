// The parameters' vector-Jacobian product: a forward pass keeping every layer's output, then one backward
// sweep of one derivative row per sample (the cotangent), in which every layer with parameters adds its
// parameter cotangent (Leaf::gradient).

#include <deque>
#include <map>

#include "backend/parallel.hpp"
#include "batch.hpp"
#include "nn/model.hpp"

namespace xntk {

namespace {

template <class T>
class GradientVisitor final : public nn::Visitor<T> {
 public:
  explicit GradientVisitor(std::map<const nn::Leaf<T>*, std::vector<T*>> grads) : grads_(std::move(grads)) {}
  void leaf(nn::Sweep<T>& s, const nn::Leaf<T>& layer, const nn::Pointers<T>& in) override {
    auto& lane = s.lanes[0];
    // a per-sample cotangent stays per sample through every layer
    lane.delta = nn::expanded(s.cx, std::move(lane.delta), 1, layer.out_size(), lane.batch);
    layer.gradient(s.cx, in[0], lane.batch, lane.delta.data(), grads_.at(&layer));
  }

 private:
  std::map<const nn::Leaf<T>*, std::vector<T*>> grads_;
};

}  // namespace

template <class T>
std::vector<NamedTensor<T>> gradient(const Sequential<T>& model, TensorArg<T> x, TensorArg<T> cotangent) {
  return detail::value_and_gradient<T>(model, x, [&](Tensor<T>&) { return cotangent; });
}

template <class T>
std::vector<NamedTensor<T>> detail::value_and_gradient(const Sequential<T>& model, TensorArg<T> x,
                                                       const std::function<TensorRef<T>(Tensor<T>&)>& cotangent_of) {
  const int64_t n = detail::check_batch(model, x, "gradient: x");
  Shape expected{n};
  expected.insert(expected.end(), model.output_shape().begin(), model.output_shape().end());
  const auto& impl = model.impl();
  std::vector<NamedTensor<T>> out;
  std::map<const nn::Leaf<T>*, std::vector<T*>> grads;
  for (const auto* leaf : impl.owners)
    for (const auto& p : leaf->parameters()) out.push_back({p.name, Tensor<T>(p.tensor->shape())});
  size_t k = 0;
  for (const auto* leaf : impl.owners)
    for (size_t q = 0; q < leaf->parameters().size(); ++q) grads[leaf].push_back(out[k++].tensor.data());

  nn::Context<T> cx(backend::get("cpu"));
  nn::Values<T> values(cx, impl.nodes);
  const T* y = impl.root->forward(cx, values, x.data(), n);
  Tensor<T> f(expected);
  std::copy(y, y + f.size(), f.data());
  const TensorRef<T> cotangent = cotangent_of(f);  // valid until this returns
  if (cotangent.shape() != expected)
    throw Error("gradient: the cotangent has shape " + to_string(cotangent.shape()) + ", expected " +
                to_string(expected) + " (the model's output for " + std::to_string(n) + " samples)");
  if (impl.owners.empty()) return out;
  GradientVisitor<T> visitor(std::move(grads));
  nn::Sweep<T> sweep(cx, 1, 1, visitor);
  sweep.lanes[0].values = &values;
  sweep.lanes[0].batch = n;
  sweep.lanes[0].delta = {nn::DeltaKind::per_sample, cx.buffer()};
  sweep.lanes[0].delta.rows.resize(cotangent.size());
  cx.ops().copy(cotangent.size(), cotangent.data(), sweep.lanes[0].delta.rows.data());
  impl.root->sweep(sweep, {x.data(), nullptr}, {nullptr, nullptr}, false);
  return out;
}

template <class T>
Tensor<T> jvp(const Sequential<T>& model, TensorArg<T> x, const std::vector<NamedTensor<T>>& tangents) {
  const int64_t n = detail::check_batch(model, x, "jvp: x");
  const auto& impl = model.impl();
  nn::Tangents<T> dtheta;
  std::map<std::string, const NamedTensor<T>*> given;
  for (const auto& t : tangents)
    if (!given.emplace(t.name, &t).second) throw Error("jvp: the tangent \"" + t.name + "\" is given twice");
  size_t used = 0;
  for (const auto* leaf : impl.owners) {
    const auto params = leaf->parameters();
    bool any = false;
    for (const auto& p : params) any = any || given.count(p.name);
    if (!any) continue;
    auto& v = dtheta.of[leaf];
    for (const auto& p : params) {
      const auto it = given.find(p.name);
      if (it == given.end()) {  // zero for this parameter: a zero tensor of its shape
        v.push_back(nullptr);
        continue;
      }
      if (it->second->tensor.shape() != p.tensor->shape())
        throw Error("jvp: the tangent of \"" + p.name + "\" has shape " + to_string(it->second->tensor.shape()) +
                    ", expected " + to_string(p.tensor->shape()));
      v.push_back(it->second->tensor.data());
      ++used;
    }
  }
  if (used != given.size())
    for (const auto& [name, _] : given) model.parameter(name);  // names the first that is not a parameter
  // a leaf with some parameters' tangents zero: those point at zeros
  std::deque<Tensor<T>> zeros;  // (a deque: the pointers taken stay valid as it grows)
  for (auto& [leaf, v] : dtheta.of) {
    const auto params = leaf->parameters();
    for (size_t q = 0; q < v.size(); ++q)
      if (!v[q]) {
        zeros.emplace_back(params[q].tensor->shape());
        v[q] = zeros.back().data();
      }
  }
  Shape shape{n};
  shape.insert(shape.end(), model.output_shape().begin(), model.output_shape().end());
  Tensor<T> out(shape);
  nn::Context<T> cx(backend::get("cpu"));
  nn::Values<T> primal(cx, impl.nodes), tangent(cx, impl.nodes);
  impl.root->forward(cx, primal, x.data(), n);
  const T* dy = impl.root->tangent(cx, primal, tangent, x.data(), nullptr, n, dtheta);
  if (dy) std::copy(dy, dy + out.size(), out.data());
  return out;
}

template std::vector<NamedTensor<float>> detail::value_and_gradient(
    const Sequential<float>&, TensorArg<float>, const std::function<TensorRef<float>(Tensor<float>&)>&);
template std::vector<NamedTensor<double>> detail::value_and_gradient(
    const Sequential<double>&, TensorArg<double>, const std::function<TensorRef<double>(Tensor<double>&)>&);
template std::vector<NamedTensor<float>> gradient(const Sequential<float>&, TensorArg<float>, TensorArg<float>);
template std::vector<NamedTensor<double>> gradient(const Sequential<double>&, TensorArg<double>, TensorArg<double>);
template Tensor<float> jvp(const Sequential<float>&, TensorArg<float>, const std::vector<NamedTensor<float>>&);
template Tensor<double> jvp(const Sequential<double>&, TensorArg<double>, const std::vector<NamedTensor<double>>&);

}  // namespace xntk
