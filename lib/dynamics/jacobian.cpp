// Per-sample Jacobians on request: one backward sweep of the O output streams (identity deltas at the
// output, as the kernel driver's), each layer with parameters writing its per-sample, per-stream parameter
// cotangents (Leaf::jacobian) into its columns of J (N, O, P), parameters in component order.

#include <map>

#include "batch.hpp"
#include "nn/model.hpp"
#include "ntk/plan.hpp"
#include "xntk/dynamics.hpp"

namespace xntk {

namespace {

template <class T>
class JacobianVisitor final : public nn::Visitor<T> {
 public:
  JacobianVisitor(Tensor<T>& J, std::map<const nn::Leaf<T>*, int64_t> column) : J_(J), column_(std::move(column)) {}

  void leaf(nn::Sweep<T>& s, const nn::Leaf<T>& layer, const nn::Pointers<T>& in) override {
    auto& lane = s.lanes[0];
    const int64_t n = lane.batch, O = s.streams, P = J_.dim(2);
    lane.delta = nn::expanded(s.cx, std::move(lane.delta), O, layer.out_size(), n);
    const auto params = layer.parameters();
    std::vector<backend::Buffer<T>> parts;
    std::vector<T*> out;
    for (const auto& p : params) {
      parts.push_back(s.cx.buffer());
      parts.back().resize(n * O * p.tensor->size());
      out.push_back(parts.back().data());
    }
    layer.jacobian(s.cx, in[0], n, O, lane.delta.data(), out);
    // into J's rows (b, o), at this layer's columns: weight then bias
    int64_t col = column_.at(&layer);
    for (size_t q = 0; q < params.size(); ++q) {
      const int64_t size = params[q].tensor->size();
      for (int64_t r = 0; r < n * O; ++r)
        std::copy(out[q] + r * size, out[q] + (r + 1) * size, J_.data() + r * P + col);
      col += size;
    }
  }

 private:
  Tensor<T>& J_;
  std::map<const nn::Leaf<T>*, int64_t> column_;
};

}  // namespace

template <class T>
Tensor<T> jacobian(const Sequential<T>& model, TensorArg<T> x) {
  const int64_t n = detail::check_batch(model, x, "jacobian: x"), O = model.outputs();
  const auto& impl = model.impl();
  // columns in component order: the owners reversed, weight before bias
  std::map<const nn::Leaf<T>*, int64_t> column;
  int64_t P = 0;
  for (auto it = impl.owners.rbegin(); it != impl.owners.rend(); ++it) {
    column[*it] = P;
    for (const auto& p : (*it)->parameters()) P += p.tensor->size();
  }
  const double bytes = static_cast<double>(sizeof(T)) * static_cast<double>(n) * static_cast<double>(O) *
                       static_cast<double>(P),
               avail = engine::available_bytes();
  if (bytes > 0.9 * avail)
    throw Error("jacobian: (" + std::to_string(n) + ", " + std::to_string(O) + ", " + std::to_string(P) + ") needs " +
                std::to_string(bytes / 1e9) + " GB but only " + std::to_string(avail / 1e9) +
                " GB of memory is available; use fewer samples (or the kernel itself, which never forms J)");
  Tensor<T> J({n, O, P});
  if (impl.owners.empty()) return J;
  nn::Context<T> cx(backend::get("cpu"));
  nn::Values<T> values(cx, impl.nodes);
  impl.root->forward(cx, values, x.data(), n);
  JacobianVisitor<T> visitor(J, std::move(column));
  nn::Sweep<T> sweep(cx, 1, O, visitor);
  sweep.lanes[0].values = &values;
  sweep.lanes[0].batch = n;
  impl.root->sweep(sweep, {x.data(), nullptr}, {nullptr, nullptr}, false);
  return J;
}

template Tensor<float> jacobian(const Sequential<float>&, TensorArg<float>);
template Tensor<double> jacobian(const Sequential<double>&, TensorArg<double>);

}  // namespace xntk
