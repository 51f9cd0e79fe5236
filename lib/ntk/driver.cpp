// The explicit driver: a plan of tile pairs; for each pair a forward pass of both sides, then one backward
// sweep of the O output-derivative streams through the layer tree, in which every layer with parameters adds
// its closed-form components into the pair's blocks (the tile pass); each finished block goes to the sink.

#include "ntk/driver.hpp"

#include <algorithm>

#include "backend/parallel.hpp"
#include "batch.hpp"
#include "nn/model.hpp"
#include "ntk/memory_sink.hpp"
#include "ntk/plan.hpp"

namespace xntk {

const char* name(Mode mode) {
  switch (mode) {
    case Mode::full: return "full";
    case Mode::trace: return "trace";
    case Mode::diagonal: return "diagonal";
  }
  return "?";
}

namespace engine {

namespace {

using backend::parallel_for_work;

/// Scratch the layers may keep from one leaf to the next: larger Grams are freed before the next leaf's
/// backward step, so that peak memory holds the Grams or the delta buffers, not both; smaller ones are kept,
/// to save page faults in the next layer.
constexpr double kKeepScratchBytes = 32.0 * 1024 * 1024;

/// One tile pair at a time: at each leaf with parameters of the backward sweep, its components of the pair,
/// into the total's block and, on request, into a block of its own that goes to the sink at once.
template <class T>
class TilePass final : public nn::Visitor<T> {
 public:
  TilePass(const Sequential<T>& model, const KernelOptions& opt, const Plan& plan, nn::Context<T>& cx, Sink<T>& sink,
           int64_t steps)
      : model_(model), opt_(opt), plan_(plan), cx_(cx), sink_(sink), steps_(steps) {
    // one pair covering everything writes straight into the result, where the sink offers it
    direct_ = plan.whole && sink.whole(0) && (plan.layout.components.empty() || sink.whole(1));
  }

  void run(const T* x1, const T* x2, const TilePair& pair) {
    const auto& impl = model_.impl();
    const int64_t in = numel(model_.input_shape()), O = plan_.layout.outputs;
    pair_ = pair;
    block_ = {pair.i0, pair.n1, pair.j0, pair.n2, pair.diagonal, plan_.layout.symmetric && !pair.diagonal};
    nn::Values<T> va(cx_, impl.nodes), vb(cx_, pair.diagonal ? 0 : impl.nodes);
    const T* xa = x1 + pair.i0 * in;
    const T* xb = pair.diagonal ? xa : x2 + pair.j0 * in;
    impl.root->forward(cx_, va, xa, pair.n1);
    if (!pair.diagonal) impl.root->forward(cx_, vb, xb, pair.n2);
    const size_t block = static_cast<size_t>(pair.n1 * pair.n2 * plan_.layout.per_pair());
    if (!direct_) acc_.assign(block, T(0));
    total_ = direct_ ? sink_.whole(0) : acc_.data();
    nn::Sweep<T> sweep(cx_, pair.diagonal ? 1 : 2, O, *this);
    sweep.lanes[0].values = &va;
    sweep.lanes[0].batch = pair.n1;
    sweep.lanes[1].values = &vb;
    sweep.lanes[1].batch = pair.n2;
    impl.root->sweep(sweep, {xa, xb}, {nullptr, nullptr}, false);
    if (!direct_) sink_.put(0, block_, acc_.data());
  }

  void leaf(nn::Sweep<T>& s, const nn::Leaf<T>& layer, const nn::Pointers<T>& in) override {
    const nn::Side<T> a{in[0], &s.lanes[0].delta, s.lanes[0].batch};
    const nn::Side<T> b = s.count == 2 ? nn::Side<T>{in[1], &s.lanes[1].delta, s.lanes[1].batch} : a;
    const int64_t per = plan_.layout.per_pair();
    nn::ComponentTarget<T> t{opt_.mode, plan_.layout.outputs, pair_.diagonal, total_, total_};
    const int c = layer.component_slot();
    const bool has_bias = layer.parameters().size() > 1, components = !plan_.layout.components.empty();
    const size_t block = static_cast<size_t>(pair_.n1 * pair_.n2 * per);
    if (components) {
      // each component into its own block, then added to the total
      if (direct_) {
        t.weight = sink_.whole(1 + c);
        t.bias = has_bias ? sink_.whole(2 + c) : nullptr;
      } else {
        wbuf_.assign(block, T(0));
        bbuf_.assign(has_bias ? block : 0, T(0));
        t.weight = wbuf_.data();
        t.bias = has_bias ? bbuf_.data() : nullptr;
      }
    }
    layer.components(s.cx, a, b, t);
    if (components) {
      const T* cw = t.weight;
      const T* cb = t.bias;
      T* total = total_;
      const int64_t row = pair_.n2 * per;
      parallel_for_work(pair_.n1, static_cast<double>(row), [&](int64_t i) {
        for (int64_t e = i * row; e < (i + 1) * row; ++e) total[e] += cb ? cw[e] + cb[e] : cw[e];
      });
      if (!direct_) {
        sink_.put(1 + c, block_, wbuf_.data());
        if (has_bias) sink_.put(2 + c, block_, bbuf_.data());
      }
    }
    ++done_;
    if (opt_.progress) opt_.progress(done_, steps_);
    if (opt_.progress_flops) opt_.progress_flops(done_, steps_, cx_.flops());
    if (s.cx.scratch_bytes() > kKeepScratchBytes) s.cx.release_scratch();
  }

 private:
  const Sequential<T>& model_;
  const KernelOptions& opt_;
  const Plan& plan_;
  nn::Context<T>& cx_;
  Sink<T>& sink_;
  TilePair pair_;
  KernelBlock block_;
  T* total_ = nullptr;
  std::vector<T> acc_, wbuf_, bbuf_;
  int64_t steps_ = 0, done_ = 0;
  bool direct_ = false;
};

}  // namespace

template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2, const KernelOptions& opt,
                          const backend::Backend& backend, Sink<T>& sink, PairControl* control) {
  detail::ThreadScope threads(opt.threads);
  const bool same = x2 == nullptr;
  const int64_t n = detail::check_batch(model, x1, "x1");
  const int64_t m = same ? n : detail::check_batch(model, *x2, "x2");
  const KernelLayout layout = layout_of(model, n, m, same, opt);
  const Plan plan = make_plan(model, layout, opt, sink.resident_bytes(layout));
  Kernel<T> k;
  k.names = model.component_names();
  k.methods = plan.methods;
  k.tile = plan.tile;
  sink.begin(layout);
  nn::Context<T> cx(backend);
  if (!model.impl().owners.empty()) {
    std::vector<char> taken(plan.pairs.size(), 1);
    int64_t steps = plan.steps;
    if (control) {
      int64_t count = 0;
      for (size_t p = 0; p < plan.pairs.size(); ++p) count += taken[p] = control->take(p, plan.pairs[p]) ? 1 : 0;
      steps = plan.pairs.empty() ? 0 : plan.steps / static_cast<int64_t>(plan.pairs.size()) * count;
    }
    TilePass<T> pass(model, opt, plan, cx, sink, steps);
    for (size_t p = 0; p < plan.pairs.size(); ++p) {
      if (!taken[p]) continue;
      pass.run(x1.data(), same ? x1.data() : x2->data(), plan.pairs[p]);
      if (control) control->finished(p);
    }
  }
  sink.end();
  k.flops = cx.flops();
  return k;
}

template <class T>
void explicit_kernel_into(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend, Kernel<T>& k) {
  Kernel<T> held;
  held.total = std::move(k.total);
  held.components = std::move(k.components);
  MemorySink<T> sink(held);
  k = explicit_kernel(model, x1, x2, options, backend, sink);
  k.total = std::move(held.total);
  k.components = std::move(held.components);
}

template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend) {
  Kernel<T> k;  // no tensors to reuse: the sink allocates them
  explicit_kernel_into(model, x1, x2, options, backend, k);
  return k;
}

#define XNTK_INSTANTIATE(T)                                                                                         \
  template Kernel<T> explicit_kernel(const Sequential<T>&, TensorArg<T>, const TensorRef<T>*, const KernelOptions&, \
                                     const backend::Backend&, Sink<T>&, PairControl*);                              \
  template Kernel<T> explicit_kernel(const Sequential<T>&, TensorArg<T>, const TensorRef<T>*, const KernelOptions&, \
                                     const backend::Backend&);                                                      \
  template void explicit_kernel_into(const Sequential<T>&, TensorArg<T>, const TensorRef<T>*, const KernelOptions&, \
                                     const backend::Backend&, Kernel<T>&);
XNTK_INSTANTIATE(float)
XNTK_INSTANTIATE(double)
#undef XNTK_INSTANTIATE

}  // namespace engine

template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x1, TensorArg<T> x2, const KernelOptions& options) {
  return engine::explicit_kernel<T>(model, x1, &x2, options, backend::get(options.backend));
}

template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x, const KernelOptions& options) {
  return engine::explicit_kernel<T>(model, x, nullptr, options, backend::get(options.backend));
}

template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x1, TensorArg<T> x2, const KernelOptions& options,
              Sink<T>& sink) {
  return engine::explicit_kernel<T>(model, x1, &x2, options, backend::get(options.backend), sink);
}

template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x, const KernelOptions& options, Sink<T>& sink) {
  return engine::explicit_kernel<T>(model, x, nullptr, options, backend::get(options.backend), sink);
}

#define XNTK_INSTANTIATE(T)                                                                                 \
  template Kernel<T> ntk(const Sequential<T>&, TensorArg<T>, TensorArg<T>, const KernelOptions&);           \
  template Kernel<T> ntk(const Sequential<T>&, TensorArg<T>, const KernelOptions&);                         \
  template Kernel<T> ntk(const Sequential<T>&, TensorArg<T>, TensorArg<T>, const KernelOptions&, Sink<T>&); \
  template Kernel<T> ntk(const Sequential<T>&, TensorArg<T>, const KernelOptions&, Sink<T>&);
XNTK_INSTANTIATE(float)
XNTK_INSTANTIATE(double)
#undef XNTK_INSTANTIATE

}  // namespace xntk
