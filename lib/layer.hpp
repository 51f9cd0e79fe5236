#pragma once
// The computing layer behind each LayerSpec: forward, backward for O output-derivative streams, and
// (for layers with parameters) the NTK components from (inputs, deltas) of two batches.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/cache.hpp"
#include "xntk/kernel.hpp"
#include "xntk/model.hpp"

namespace xntk::autograd {
template <class T>
class Tape;
}

namespace xntk::detail {

/// One batch as seen by a layer during the kernel computation.
template <class T>
struct Side {
  const T* in = nullptr;     // (batch, in_size): the layer's input
  const T* delta = nullptr;  // (batch·O, out_size), row b·O + o = ∂f_o(x_b)/∂y; nullptr: δ_o = e_o
  int64_t batch = 0;
  bool shared = false;  // delta holds only O rows, the same for every sample
};

/// Scratch buffers that live for one kernel computation, so that layers reuse memory the previous
/// layer already touched instead of faulting in fresh pages for every Gram. They come from and go back
/// to the process-wide block cache (cpu/cache.hpp), so repeated computations reuse them too.
template <class T>
class Workspace {
 public:
  /// Buffer `slot` (0–3) with room for at least n values; its contents are unspecified.
  T* get(int slot, int64_t n) {
    auto& b = buffers_[static_cast<size_t>(slot)];
    b.resize(n);
    return b.data();
  }
  /// Bytes held.
  double bytes() const {
    double n = 0;
    for (const auto& b : buffers_) n += static_cast<double>(b.capacity_bytes());
    return n;
  }
  /// Frees every buffer (not cached: the point is to lower the peak).
  void release() {
    for (auto& b : buffers_) b.free();
  }

 private:
  std::array<Buffer<T>, 4> buffers_;
};

/// Where a layer adds its components for one tile pair: buffers (n1, n2, per) with per = O·O, 1 or O.
template <class T>
struct ComponentTarget {
  Mode mode = Mode::full;
  int64_t outputs = 0;
  // The two sides are the same batch. Then only sample pairs (i, j ≤ i) need to be written — the driver
  // mirrors the rest — and each diagonal pair's (o, o') block must be exactly symmetric.
  bool same = false;
  T* weight = nullptr;
  T* bias = nullptr;
  double* flops = nullptr;
  Workspace<T>* workspace = nullptr;  // never null when the driver calls components()
};

template <class T>
class Layer {
 public:
  Layer(int index, Shape in, Shape out) : index_(index), in_(std::move(in)), out_(std::move(out)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  int index() const { return index_; }
  const Shape& in_shape() const { return in_; }
  const Shape& out_shape() const { return out_; }
  int64_t in_size() const { return numel(in_); }
  int64_t out_size() const { return numel(out_); }

  /// y = f(a) for a batch: in (batch, in_size), out (batch, out_size).
  virtual void forward(const T* in, T* out, int64_t batch) const = 0;
  /// din = dout · ∂y/∂a for `streams` derivative rows per sample: dout (batch·streams, out_size),
  /// din (batch·streams, in_size); in/out are the forward values of the same batch.
  virtual void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const = 0;
  /// backward() when the layer below multiplies din by an exact zero wherever !(gate > 0) (gate: the
  /// input of a ReLU below, (batch, in_size)): din may then be written as 0 there without computing it.
  /// Layers that have no use for the gate ignore it.
  virtual void backward_gated(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams,
                              const T* /*gate*/) const {
    backward(in, out, dout, din, batch, streams);
  }
  /// Whether this layer's backward multiplies by a derivative that is exactly 0 wherever its input is not
  /// positive (ReLU), so that the layer above may leave those derivatives uncomputed (backward_gated).
  virtual bool gates_below_zero() const { return false; }
  /// FLOPs of forward and of backward for `streams` rows per sample.
  virtual double forward_flops(int64_t batch) const { return static_cast<double>(batch * out_size()); }
  virtual double backward_flops(int64_t batch, int64_t streams) const {
    return static_cast<double>(batch * streams * in_size());
  }

  /// Parameters in state_dict order; empty for layers without any.
  virtual std::vector<NamedParameter<T>> parameters() const { return {}; }
  /// (c_w, c_b) of the parameterisation.
  virtual std::pair<double, double> multipliers() const { return {0.0, 0.0}; }
  /// Whether components() accepts Side::delta == nullptr (δ_o = e_o).
  virtual bool accepts_identity_delta() const { return false; }
  /// Whether components() accepts Side::shared deltas (O rows shared by all samples).
  virtual bool accepts_shared_delta() const { return false; }
  /// Whether backward() ignores in/out (a linear map): then deltas shared by all samples stay shared,
  /// and backward is called once with batch = 1 and in = out = nullptr.
  virtual bool input_independent_backward() const { return false; }
  /// Whether backward() may be called in place (din == dout): elementwise layers, where the driver
  /// then keeps the delta buffer instead of filling a fresh one of the same size.
  virtual bool in_place_backward() const { return false; }
  /// Adds this layer's weight and bias components for sides a (rows) and b (columns).
  virtual void components(const Side<T>&, const Side<T>&, const ComponentTarget<T>&) const {}
  /// Extra working memory of components() for batches n1, n2, in bytes.
  virtual double component_bytes(int64_t, int64_t, int64_t) const { return 0; }
  /// The evaluation order chosen for n1 × n2 samples ("" for layers without a choice).
  virtual std::string method(int64_t, int64_t, int64_t) const { return ""; }

  /// Records the forward of one sample on the autograd tape with tape primitives only; parameter
  /// slots are numbered from `first_slot` in parameters() order. Returns the output variable.
  virtual int record(autograd::Tape<T>& tape, int in, int first_slot) const = 0;

 protected:
  int index_;
  Shape in_, out_;
};

}  // namespace xntk::detail
