// The parameters' vector-Jacobian product: a forward pass keeping every layer's output, then one backward
// sweep of one derivative row per sample (the cotangent), in which every layer with parameters adds its
// parameter cotangent (Leaf::gradient). On several threads the batch is cut into slices that each run both
// passes on one thread (detail::gradient_shards): a training step of a small network is dozens of layer
// operations of tens of microseconds, and a parallel region for each cost more than it saved.

#include <algorithm>
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

/// Zero parameter cotangents: `reuse`'s tensors zeroed in place (on the threads) where they are the parameters'
/// names and shapes, otherwise new ones.
template <class T>
std::vector<NamedTensor<T>> zero_gradients(const typename Sequential<T>::Impl& impl,
                                           std::vector<NamedTensor<T>>* reuse = nullptr) {
  std::vector<NamedTensor<T>> out;
  if (reuse) {
    size_t k = 0;
    bool same = true;
    for (const auto* leaf : impl.owners)
      for (const auto& p : leaf->parameters()) {
        same = same && k < reuse->size() && (*reuse)[k].name == p.name &&
               (*reuse)[k].tensor.shape() == p.tensor->shape() && (*reuse)[k].tensor.size() == p.tensor->size();
        ++k;
      }
    if (same && k == reuse->size()) {
      out = std::move(*reuse);
      for (auto& g : out) {
        T* d = g.tensor.data();
        const int64_t n = g.tensor.size();
        constexpr int64_t kBlock = int64_t{1} << 16;
        backend::parallel_for_work((n + kBlock - 1) / kBlock, static_cast<double>(kBlock), [&](int64_t b) {
          std::fill(d + b * kBlock, d + std::min(n, (b + 1) * kBlock), T(0));
        });
      }
      return out;
    }
  }
  for (const auto* leaf : impl.owners)
    for (const auto& p : leaf->parameters()) out.push_back({p.name, Tensor<T>(p.tensor->shape())});
  return out;
}

/// One slice of a batch's samples with its own context, layer outputs and parameter cotangents, so that
/// the slices of a batch run at once (layers are const during computation).
template <class T>
struct Shard {
  Shard(const typename Sequential<T>::Impl& impl, int64_t first, int64_t count,
        std::vector<NamedTensor<T>>* reuse = nullptr)
      : b0(first), n(count), cx(backend::get("cpu")), values(cx, impl.nodes), grads(zero_gradients<T>(impl, reuse)) {}
  std::map<const nn::Leaf<T>*, std::vector<T*>> grad_pointers(const typename Sequential<T>::Impl& impl) {
    std::map<const nn::Leaf<T>*, std::vector<T*>> m;
    size_t k = 0;
    for (const auto* leaf : impl.owners)
      for (size_t q = 0; q < leaf->parameters().size(); ++q) m[leaf].push_back(grads[k++].tensor.data());
    return m;
  }
  int64_t b0, n;
  nn::Context<T> cx;
  nn::Values<T> values;
  std::vector<NamedTensor<T>> grads;
  const T* y = nullptr;
};

}  // namespace

int detail::gradient_shards(int64_t n, int threads, double parameter_bytes) {
  if (parameter_bytes > kMaxShardParameterBytes) return 1;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n / kMinShardSamples)));
}

template <class T>
std::vector<NamedTensor<T>> gradient(const Sequential<T>& model, TensorArg<T> x, TensorArg<T> cotangent) {
  std::vector<NamedTensor<T>> grads;
  detail::value_and_gradient<T>(
      model, x, [&](Tensor<T>&) { return cotangent; }, grads);
  return grads;
}

template <class T>
void detail::value_and_gradient(const Sequential<T>& model, TensorArg<T> x,
                                const std::function<TensorRef<T>(Tensor<T>&)>& cotangent_of,
                                std::vector<NamedTensor<T>>& grads) {
  const int64_t n = detail::check_batch(model, x, "gradient: x");
  Shape expected{n};
  expected.insert(expected.end(), model.output_shape().begin(), model.output_shape().end());
  const auto& impl = model.impl();
  const int64_t in_size = n > 0 ? x.size() / n : 0, out_size = numel(model.output_shape());
  double parameter_bytes = 0;
  for (const auto* leaf : impl.owners)
    for (const auto& p : leaf->parameters()) parameter_bytes += static_cast<double>(p.tensor->size() * sizeof(T));
  const int count = detail::gradient_shards(n, backend::loop_threads(), parameter_bytes);
  std::deque<Shard<T>> shards;  // (not movable: each holds its context)
  for (int s = 0; s < count; ++s) {
    const int64_t b0 = n * s / count, b1 = n * (s + 1) / count;
    shards.emplace_back(impl, b0, b1 - b0, s == 0 ? &grads : nullptr);
  }
  // the forward passes, one shard a thread: each shard's layers run single-threaded inside the region
  backend::parallel_for(count, [&](int64_t s) {
    auto& sh = shards[static_cast<size_t>(s)];
    sh.y = impl.root->forward(sh.cx, sh.values, x.data() + sh.b0 * in_size, sh.n);
  });
  Tensor<T> f(expected);
  for (const auto& sh : shards) std::copy(sh.y, sh.y + sh.n * out_size, f.data() + sh.b0 * out_size);
  const TensorRef<T> cotangent = cotangent_of(f);  // valid until this returns
  if (cotangent.shape() != expected)
    throw Error("gradient: the cotangent has shape " + to_string(cotangent.shape()) + ", expected " +
                to_string(expected) + " (the model's output for " + std::to_string(n) + " samples)");
  if (impl.owners.empty()) {
    grads = std::move(shards[0].grads);
    return;
  }
  backend::parallel_for(count, [&](int64_t s) {
    auto& sh = shards[static_cast<size_t>(s)];
    GradientVisitor<T> visitor(sh.grad_pointers(impl));
    nn::Sweep<T> sweep(sh.cx, 1, 1, visitor);
    sweep.lanes[0].values = &sh.values;
    sweep.lanes[0].batch = sh.n;
    sweep.lanes[0].delta = {nn::DeltaKind::per_sample, sh.cx.buffer()};
    sweep.lanes[0].delta.rows.resize(sh.n * out_size);
    sh.cx.ops().copy(sh.n * out_size, cotangent.data() + sh.b0 * out_size, sweep.lanes[0].delta.rows.data());
    impl.root->sweep(sweep, {x.data() + sh.b0 * in_size, nullptr}, {nullptr, nullptr}, false);
  });
  auto& out = shards[0].grads;
  for (size_t s = 1; s < shards.size(); ++s)  // the shards' cotangents summed, in shard order
    for (size_t k = 0; k < out.size(); ++k) {
      T* o = out[k].tensor.data();
      const T* g = shards[s].grads[k].tensor.data();
      backend::parallel_for_work((out[k].tensor.size() + 4095) / 4096, 4096, [&](int64_t b) {
        const int64_t e1 = std::min(out[k].tensor.size(), (b + 1) * 4096);
        for (int64_t e = b * 4096; e < e1; ++e) o[e] += g[e];
      });
    }
  grads = std::move(out);
}

template <class T>
Tensor<T> jvp(const Sequential<T>& model, TensorArg<T> x, const std::vector<NamedTensor<T>>& tangents) {
  return detail::jvp<T>(model, x, tangents, nullptr);
}

template <class T>
Tensor<T> detail::jvp(const Sequential<T>& model, TensorArg<T> x, const std::vector<NamedTensor<T>>& tangents,
                      Tensor<T>* primal_out) {
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
  const T* y = impl.root->forward(cx, primal, x.data(), n);
  if (primal_out) {
    *primal_out = Tensor<T>(shape);
    std::copy(y, y + out.size(), primal_out->data());
  }
  const T* dy = impl.root->tangent(cx, primal, tangent, x.data(), nullptr, n, dtheta);
  if (dy) std::copy(dy, dy + out.size(), out.data());
  return out;
}

template void detail::value_and_gradient(const Sequential<float>&, TensorArg<float>,
                                         const std::function<TensorRef<float>(Tensor<float>&)>&,
                                         std::vector<NamedTensor<float>>&);
template void detail::value_and_gradient(const Sequential<double>&, TensorArg<double>,
                                         const std::function<TensorRef<double>(Tensor<double>&)>&,
                                         std::vector<NamedTensor<double>>&);
template std::vector<NamedTensor<float>> gradient(const Sequential<float>&, TensorArg<float>, TensorArg<float>);
template std::vector<NamedTensor<double>> gradient(const Sequential<double>&, TensorArg<double>, TensorArg<double>);
template Tensor<float> detail::jvp(const Sequential<float>&, TensorArg<float>, const std::vector<NamedTensor<float>>&,
                                   Tensor<float>*);
template Tensor<double> detail::jvp(const Sequential<double>&, TensorArg<double>,
                                    const std::vector<NamedTensor<double>>&, Tensor<double>*);
template Tensor<float> jvp(const Sequential<float>&, TensorArg<float>, const std::vector<NamedTensor<float>>&);
template Tensor<double> jvp(const Sequential<double>&, TensorArg<double>, const std::vector<NamedTensor<double>>&);

}  // namespace xntk
