#pragma once
// The computing layers behind the model specs. Every layer, leaf or block, has the same four operations:
//   forward     y = f(a) for a batch
//   backward    the VJP to the layer's input for `streams` derivative rows per sample (a typed Delta)
//   gradient    the VJP to the layer's parameters (their cotangent for a batch)
//   components  the layer's closed-form NTK components from (inputs, deltas) of two batches
// Layers compute only through their Context's backend (lib/backend/backend.hpp): no kernel, no thread pool
// and no instruction set is named here. Layers are const during computation: everything a computation
// writes lives in the Context, the Values and the Deltas passed in, so two batches can run at once.
//
// Composite blocks (nn/sequential.hpp, nn/residual.hpp) are layers made of layers. The backward sweep of
// the kernel driver (and of gradient()) is a recursion through them: `sweep` visits every leaf from the
// output down, in lockstep for the one or two batches ("lanes") of a tile pair, and a Visitor does at each
// leaf with parameters what the computation needs (its components, or its parameter cotangent). The
// driver never looks inside a layer, and a leaf never learns who called it.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "backend/buffer.hpp"
#include "xntk/kernel.hpp"
#include "xntk/model.hpp"

namespace xntk::nn {

using backend::Buffer;

/// What one computation's layers share: the backend, the FLOPs its primitives reported, and scratch
/// buffers that layers reuse instead of faulting in fresh pages for every Gram.
template <class T>
class Context {
 public:
  explicit Context(const backend::Backend& backend) : backend_(&backend), ops_(&backend.template ops<T>()) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const backend::Backend& backend() const { return *backend_; }
  const backend::Ops<T>& ops() const { return *ops_; }
  /// Adds the FLOPs a primitive reported: cx.count(cx.ops().gemm(…)).
  void count(double flops) { flops_ += flops; }
  double flops() const { return flops_; }
  /// An empty buffer in the backend's memory.
  Buffer<T> buffer() const { return Buffer<T>(backend_->memory()); }
  /// Scratch slot `slot` (0–3) with room for at least n values; contents unspecified. Valid until the next
  /// call with the same slot or release_scratch().
  T* scratch(int slot, int64_t n) {
    auto& b = scratch_[static_cast<size_t>(slot)];
    if (b.capacity_bytes() == 0) b = buffer();
    b.resize(n);
    return b.data();
  }
  /// Bytes the scratch slots hold.
  double scratch_bytes() const {
    double n = 0;
    for (const auto& b : scratch_) n += static_cast<double>(b.capacity_bytes());
    return n;
  }
  /// Frees the scratch slots (not cached: the point is to lower the peak).
  void release_scratch() {
    for (auto& b : scratch_) b.free();
  }

 private:
  const backend::Backend* backend_;
  const backend::Ops<T>* ops_;
  double flops_ = 0;
  std::array<Buffer<T>, 4> scratch_;
};

/// What the rows of a back-propagated derivative stand for, for `streams` rows per sample.
enum class DeltaKind {
  identity,   ///< δ_o = e_o at the model's output: nothing is stored
  shared,     ///< `streams` rows shared by every sample (deltas that passed only input-independent maps)
  per_sample  ///< batch·streams rows, row b·streams + o = ∂f_o(x_b)/∂y
};

/// The derivative of the outputs with respect to a layer's output (or input), in one of the three forms.
/// Rows have the width of the layer's output.
template <class T>
struct Delta {
  DeltaKind kind = DeltaKind::identity;
  Buffer<T> rows;
  const T* data() const { return rows.data(); }
};

/// The identity written out: `streams` shared rows of width `streams`.
template <class T>
Delta<T> materialized(Context<T>& cx, Delta<T>&& d, int64_t streams) {
  if (d.kind != DeltaKind::identity) return std::move(d);
  Delta<T> m{DeltaKind::shared, cx.buffer()};
  m.rows.resize(streams * streams);
  cx.ops().identity(streams, m.rows.data());
  return m;
}

/// Shared (or identity) deltas repeated for each of `batch` samples: per-sample rows of width `width`.
template <class T>
Delta<T> expanded(Context<T>& cx, Delta<T>&& d, int64_t streams, int64_t width, int64_t batch) {
  if (d.kind == DeltaKind::per_sample) return std::move(d);
  d = materialized(cx, std::move(d), streams);
  Delta<T> e{DeltaKind::per_sample, cx.buffer()};
  e.rows.resize(batch * streams * width);
  cx.ops().repeat(d.rows.data(), streams * width, batch, e.rows.data());
  return e;
}

/// A copy of d (n values of rows).
template <class T>
Delta<T> copied(Context<T>& cx, const Delta<T>& d, int64_t n) {
  Delta<T> c{d.kind, cx.buffer()};
  if (d.kind == DeltaKind::identity) return c;
  c.rows.resize(n);
  cx.ops().copy(n, d.rows.data(), c.rows.data());
  return c;
}

/// Forward values of one batch: each layer's output, by node id (Layer::id()). A block's output may be
/// one of its children's (an alias).
template <class T>
class Values {
 public:
  /// `keep`: every output stays until released (for a backward sweep); otherwise a block frees each child's
  /// output once the next child has consumed it (a forward pass alone).
  Values(Context<T>& cx, int nodes, bool keep = true)
      : owned_(static_cast<size_t>(nodes)), alias_(static_cast<size_t>(nodes), -1), keep_(keep) {
    for (auto& b : owned_) b = cx.buffer();
  }
  bool keep() const { return keep_; }
  /// Room for node `id`'s output of n values.
  T* allocate(int id, int64_t n) {
    auto& b = owned_[static_cast<size_t>(id)];
    b.resize(n);
    return b.data();
  }
  /// Node `id`'s output is node `owner`'s.
  void alias(int id, int owner) { alias_[static_cast<size_t>(id)] = owner; }
  const T* output(int id) const {
    const int a = alias_[static_cast<size_t>(id)];
    return a >= 0 ? output(a) : owned_[static_cast<size_t>(id)].data();
  }
  /// Frees node `id`'s output (for an alias, its owner's).
  void release(int id) {
    const int a = alias_[static_cast<size_t>(id)];
    if (a >= 0)
      release(a);
    else
      owned_[static_cast<size_t>(id)].release();
  }

 private:
  std::vector<Buffer<T>> owned_;
  std::vector<int> alias_;
  bool keep_;
};

/// One batch as the kernel driver's components see it at a layer: its input and its output deltas.
template <class T>
struct Side {
  const T* in = nullptr;
  const Delta<T>* delta = nullptr;
  int64_t batch = 0;
};

/// Where a layer adds its components for one tile pair: blocks (n1, n2, per) with per = O·O, 1 or O.
template <class T>
struct ComponentTarget {
  Mode mode = Mode::full;
  int64_t outputs = 0;
  /// The two sides are the same batch. Then only sample pairs (i, j ≤ i) need to be written (the driver
  /// mirrors the rest) and each diagonal pair's (o, o') block must be exactly symmetric.
  bool same = false;
  T* weight = nullptr;
  T* bias = nullptr;  ///< may be null (no bias) or equal to weight (the total only)
};

using MethodNote = MethodUsed;

template <class T>
class Layer;
template <class T>
class Leaf;

/// One or two lanes of a backward sweep: each a batch with its forward values and current delta.
template <class T>
struct Lane {
  Values<T>* values = nullptr;
  int64_t batch = 0;
  Delta<T> delta;
};

template <class T>
using Pointers = std::array<const T*, 2>;

/// The parameters' tangents of a forward-mode pass: per leaf, one pointer per parameter (parameters() order);
/// a leaf not listed has zero tangents.
template <class T>
struct Tangents {
  std::map<const Leaf<T>*, std::vector<const T*>> of;
  const std::vector<const T*>* find(const Leaf<T>& leaf) const {
    const auto it = of.find(&leaf);
    return it == of.end() ? nullptr : &it->second;
  }
};

template <class T>
class Sweep;

/// What a backward sweep does at each leaf with parameters, before the leaf's backward.
template <class T>
class Visitor {
 public:
  virtual ~Visitor() = default;
  /// `in`: the leaf's input on each lane.
  virtual void leaf(Sweep<T>& s, const Leaf<T>& layer, const Pointers<T>& in) = 0;
};

/// The state of a backward sweep: its context, lanes (1 or 2; lanes[1] may be the same batch as lanes[0],
/// then count is 1), streams per sample, and the visitor.
template <class T>
class Sweep {
 public:
  Sweep(Context<T>& cx, int count, int64_t streams, Visitor<T>& visitor)
      : cx(cx), count(count), streams(streams), visitor(visitor) {}
  Context<T>& cx;
  int count;
  int64_t streams;
  Visitor<T>& visitor;
  std::array<Lane<T>, 2> lanes;
};

/// A node of the model: a leaf layer or a block of layers.
template <class T>
class Layer {
 public:
  Layer(Shape in, Shape out, std::string path) : in_(std::move(in)), out_(std::move(out)), path_(std::move(path)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  const Shape& in_shape() const { return in_; }
  const Shape& out_shape() const { return out_; }
  int64_t in_size() const { return numel(in_); }
  int64_t out_size() const { return numel(out_); }
  /// The module path in the equivalent PyTorch module ("3", "2.body.0"; "" for the model itself).
  const std::string& path() const { return path_; }
  /// The type name of the model JSON ("linear", "residual", …).
  virtual std::string type() const = 0;

  /// Node number in the model's pre-order (the index of its output in Values); set by the model.
  int id() const { return id_; }
  void set_id(int id) { id_ = id; }
  /// f(node) for this node and, for blocks, every node inside it, in pre-order (state_dict order).
  virtual void for_each(const std::function<void(const Layer&)>& f) const { f(*this); }
  /// The leaf behind this node, or null for a block.
  virtual const Leaf<T>* leaf() const { return nullptr; }
  /// Whether this layer or one inside it has parameters.
  bool has_parameters() const {
    bool any = false;
    for_each([&](const Layer& l) { any = any || (l.leaf() && !l.leaf()->parameters().empty()); });
    return any;
  }

  /// Runs the layer on `batch` samples `in` (batch × in_size), leaving its output (and its children's) in
  /// `values`; returns its output (batch × out_size).
  virtual const T* forward(Context<T>& cx, Values<T>& values, const T* in, int64_t batch) const = 0;
  /// The values this layer offers the layer above as a gate (see Leaf::backward): where its backward
  /// multiplies by an exact zero wherever !(v > 0) (a ReLU's input), else null. `in`: this layer's input.
  virtual const T* gate(const Values<T>&, const T* /*in*/) const { return nullptr; }
  /// Backward sweep from this layer's output down to its input: visits every leaf with parameters
  /// (visitor first, then its backward), and, with `need_input`, leaves the deltas of this layer's input
  /// in the lanes. `in`: this layer's input per lane; `gate`: the gate of the layer below per lane.
  virtual void sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const = 0;
  /// Forward mode: the tangent of this layer's output for the input tangent `din` (batch × in_size; null:
  /// zero) and the parameters' tangents, into `tangent` (by node id), given the forward values `primal` of
  /// the same batch; returns it, or null when it is zero.
  virtual const T* tangent(Context<T>& cx, const Values<T>& primal, Values<T>& tangent, const T* in, const T* din,
                           int64_t batch, const Tangents<T>& dtheta) const = 0;

 protected:
  Shape in_, out_;
  std::string path_;

 private:
  int id_ = -1;
};

/// A layer that computes itself (not a block).
template <class T>
class Leaf : public Layer<T> {
 public:
  using Layer<T>::Layer;

  const Leaf<T>* leaf() const override { return this; }
  /// This layer's parameters in state_dict order (weight before bias).
  virtual std::vector<NamedParameter<T>> parameters() const { return {}; }
  /// This layer's buffers in state_dict order: state that the weights file sets but that is not a parameter (no
  /// NTK component), such as BatchNorm's running statistics.
  virtual std::vector<NamedParameter<T>> buffers() const { return {}; }
  /// (c_w, c_b) of the parameterisation; (0, 0) for layers without parameters.
  virtual std::pair<double, double> multipliers() const { return {0.0, 0.0}; }
  /// First component slot of this layer's parameters (component order); set by the model.
  int component_slot() const { return slot_; }
  void set_component_slot(int slot) { slot_ = slot; }

  const T* forward(Context<T>& cx, Values<T>& values, const T* in, int64_t batch) const override {
    T* out = values.allocate(this->id(), batch * this->out_size());
    compute(cx, in, out, batch);
    return out;
  }
  /// The forward into `out`.
  virtual void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const = 0;
  /// The input deltas from the output deltas d (`streams` rows per sample), given the forward values
  /// in and out of `batch` samples. `gate` (may be null; the layer below's input, batch × in_size): the
  /// layer below multiplies the result by an exact zero wherever !(gate > 0), so it may be left 0 there.
  virtual Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                            const T* gate) const = 0;
  /// Adds the cotangent of each parameter (parameters() order) for per-sample output deltas dout
  /// (batch × out_size) of the inputs `in`: Σ_b (∂y_b/∂θ)ᵀ dout_b.
  virtual void gradient(Context<T>&, const T* /*in*/, int64_t /*batch*/, const T* /*dout*/,
                        const std::vector<T*>& /*grads*/) const {}
  /// Each sample's and stream's parameter cotangent, as gradient() for one row at a time: out[q] receives
  /// (batch·streams × numel(θ_q)) rows, row b·streams + s for dout's row b·streams + s (per-sample rows of
  /// width out_size). The per-sample Jacobians, on request.
  virtual void jacobian(Context<T>&, const T* /*in*/, int64_t /*batch*/, int64_t /*streams*/, const T* /*dout*/,
                        const std::vector<T*>& /*out*/) const {}
  /// Adds this layer's weight and bias components for sides a (rows) and b (columns).
  virtual void components(Context<T>&, const Side<T>&, const Side<T>&, const ComponentTarget<T>&) const {}
  /// Extra working memory of components() for batches n1, n2 with O outputs in `mode`, in bytes.
  virtual double component_bytes(int64_t, int64_t, int64_t, Mode) const { return 0; }
  /// Notes on how components() computes n1 × n2 samples (a conv layer's evaluation order).
  virtual void notes(int64_t, int64_t, int64_t, std::vector<MethodNote>&) const {}
  /// The forward-mode derivative: dout = ∂f/∂a · din + Σ_θ ∂f/∂θ · dθ for `batch` samples with forward
  /// values in and out; din may be null (a zero tangent), dparams empty (zero) or one pointer per parameter.
  virtual void jvp(Context<T>&, const T* /*in*/, const T* /*din*/, const std::vector<const T*>& /*dparams*/,
                   const T* /*out*/, T* /*dout*/, int64_t /*batch*/) const {
    throw Error("layer " + this->path_ + " (" + this->type() + "): has no forward-mode derivative (jvp)");
  }

  void sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const override;
  const T* tangent(Context<T>& cx, const Values<T>& primal, Values<T>& tangent, const T* in, const T* din,
                   int64_t batch, const Tangents<T>& dtheta) const override {
    const std::vector<const T*>* dp = dtheta.find(*this);
    if (!din && !dp) return nullptr;
    T* out = tangent.allocate(this->id(), batch * this->out_size());
    static const std::vector<const T*> none;
    jvp(cx, in, din, dp ? *dp : none, primal.output(this->id()), out, batch);
    return out;
  }

 private:
  int slot_ = -1;
};

template <class T>
void Leaf<T>::sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const {
  const int id = this->id();
  if (!parameters().empty()) s.visitor.leaf(s, *this, in);
  if (need_input) {
    Lane<T>& a = s.lanes[0];
    a.delta = backward(s.cx, in[0], a.values->output(id), a.batch, s.streams, std::move(a.delta), gate[0]);
    if (s.count == 2) {
      Lane<T>& b = s.lanes[1];
      // A delta's kind depends only on the layers it passed, so both lanes always have the same kind, and
      // shared deltas on both are the same rows (both start as the identity and pass the same
      // input-independent maps): side b copies a's instead of forming them again (the tutorial CNN's head,
      // flatten and conv3 backward: 1.16–1.19 ms against 1.82–1.95)
      if (a.delta.kind == DeltaKind::shared)
        b.delta = copied(s.cx, a.delta, s.streams * this->in_size());
      else
        b.delta = backward(s.cx, in[1], b.values->output(id), b.batch, s.streams, std::move(b.delta), gate[1]);
    }
  }
  for (int l = 0; l < s.count; ++l) s.lanes[static_cast<size_t>(l)].values->release(id);
}

}  // namespace xntk::nn
