#pragma once
// The compute backend boundary: the heavy primitives the layers' maths is written on. A layer never calls
// a kernel directly; it asks its Context's backend for one of these operations, on buffers that came from
// the backend. Two backends exist: `cpu` (today's kernels, compiled once per instruction set and picked at
// run time, lib/backend/cpu/) and `reference` (plain loops, the test oracle, lib/backend/reference/). A
// device backend implements the same interface (DESIGN.md §6).
//
// Conventions: matrices are row-major with explicit leading dimensions; every primitive returns the
// floating-point operations it performed (2 per multiply-add, 1 per other arithmetic operation), so that
// a skipped zero is not counted as work done. Primitives are const and may run concurrently.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/geometry.hpp"
#include "xntk/kernel.hpp"
#include "xntk/layers.hpp"

namespace xntk::backend {

/// The rows of a grouped product (Ops::product_skipping_zeros): row r of group g of dout starts at
/// dout + g·in_group + r·in_row (k values), and of din at din + g·out_group + r·out_row (n values).
/// Together the rows of dout are those of one row-major (groups·rows × k) matrix starting at dout, and the
/// rows of din those of a (groups·rows × n) matrix starting at din, in the same order (so that one dense
/// GEMM computes the same product).
struct Groups {
  int64_t groups = 0, rows = 0;
  int64_t in_group = 0, in_row = 0;
  int64_t out_group = 0, out_row = 0;
};

/// Which window reduction a pooling layer applies.
enum class Pool {
  average,  ///< the mean of each kh × kw window, padding counted (count_include_pad = true)
  max       ///< the maximum (the derivative goes to the first maximum in row-major order; NaN wins)
};

/// The primitives on one scalar type.
template <class T>
class Ops {
 public:
  virtual ~Ops() = default;

  // ---- dense products

  /// C (m × n) = alpha · op(A) · op(B) + beta · C, op(X) = Xᵀ where the flag is set.
  virtual double gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                      const T* b, int64_t ldb, T beta, T* c, int64_t ldc) const = 0;
  /// C (m × n) = alpha · A Bᵀ + beta · C for A (m × k), B (n × k): the Gram matrix between two sets of rows.
  virtual double gram(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb,
                      T beta, T* c, int64_t ldc) const = 0;
  /// The lower triangle of C (n × n) = alpha · A Aᵀ + beta · C (SYRK); the strict upper triangle is untouched.
  virtual double syrk_lower(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c,
                            int64_t ldc) const = 0;
  /// y (batch × n) = alpha · x (batch × k) · wᵀ, w (n × k); all contiguous (a Linear layer's forward).
  virtual double linear(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) const = 0;
  /// din = alpha · dout · w (w: k × n, row-major) for the grouped rows `g`, where terms at a column of dout that
  /// is exactly zero in all of a group's rows may be skipped (they are, after a ReLU: a NaN or infinite
  /// weight met only by zeros then does not reach din). With a `gate` (group g's n values at gate + g·gate_group),
  /// din may be written as 0 instead of computed wherever !(gate > 0): the layer below multiplies it there by
  /// an exact zero. Elsewhere din is the product.
  virtual double product_skipping_zeros(const Groups& g, int64_t k, int64_t n, T alpha, const T* dout, const T* w,
                                        T* din, const T* gate, int64_t gate_group) const = 0;
  /// D (g1·R × g2·R, leading dimension ldd) = alpha · A Bᵀ, A (g1·R × k) and B (g2·R × k) with leading
  /// dimension ld, where sample i owns rows [i·R, (i + 1)·R) (the full-mode deltas Gram). With `same`
  /// (B = A, g2 = g1) only the elements (r, c) with r ≥ c need be formed.
  virtual double delta_gram(int64_t g1, int64_t g2, int64_t R, int64_t k, const T* a, const T* b, int64_t ld, bool same,
                            T alpha, T* d, int64_t ldd) const = 0;

  // ---- convolutions (cross-correlation, NCHW, W: c_out × C·kh·kw as in PyTorch)

  /// y[b] (c_out × P) = alpha · W im2col(x[b]) for `batch` images x (batch × C·H·W).
  virtual double conv_forward(const ConvGeometry& g, int64_t c_out, T alpha, const T* w, const T* x, int64_t batch,
                              T* y) const = 0;
  /// din[r] (C × H × W) = alpha · col2im(Wᵀ dout[r]) for `rows` derivative rows dout (rows × c_out·P).
  virtual double conv_backward(const ConvGeometry& g, int64_t c_out, T alpha, const T* w, const T* dout, int64_t rows,
                               T* din) const = 0;
  /// The per-sample weight gradients G[s] (streams·c_out × K) = δ_s (streams·c_out × P) · im2col(x[s])ᵀ for
  /// s < n, with δ_s = delta + s·streams·c_out·P, or `delta` itself for every s when `shared`.
  virtual double conv_gradients(const ConvGeometry& g, int64_t c_out, int64_t streams, const T* x, int64_t n,
                                const T* delta, bool shared, T* gradients) const = 0;
  /// dw (c_out × K) += alpha · Σ_{s<n} δ_s (c_out × P) · im2col(x[s])ᵀ, δ_s = delta + s·c_out·P: the weight
  /// gradient of one cotangent summed over the batch (training), without the per-sample gradients.
  virtual double conv_weight_gradient(const ConvGeometry& g, int64_t c_out, const T* x, int64_t n, const T* delta,
                                      T alpha, T* dw) const = 0;
  /// The weight component of a conv layer in its "positions" order: for sample pairs (i < n1, j < n2),
  /// out[(i·n2 + j)·per + ·] += alpha · Σ_{p,q} ⟨δ_o(x_i)[:,p], δ_o'(x'_j)[:,q]⟩ ⟨U_i[:,p], U'_j[:,q]⟩ in the
  /// mode's layout (per = O², O or 1: (o, o'), (o, o) or Σ_o). Deltas as in conv_gradients. With `same` (side b
  /// is side a) the pairs j ≤ i are computed and each is written at (i, j) and (j, i), exactly symmetric.
  virtual double conv_positions(const ConvGeometry& g, int64_t c_out, int64_t streams, Mode mode, int64_t n1,
                                int64_t n2, bool same, const T* xa, const T* da, bool shared_a, const T* xb,
                                const T* db, bool shared_b, T alpha, T* out) const = 0;

  // ---- window reductions

  /// y = pool(x) for `batch` images (batch × C·H·W) into (batch × C·OH·OW).
  virtual double pool_forward(Pool kind, const ConvGeometry& g, const T* x, int64_t batch, T* y) const = 0;
  /// din = the pooling's transpose applied to `streams` derivative rows per image (the maximum's position read
  /// from x).
  virtual double pool_backward(Pool kind, const ConvGeometry& g, const T* x, const T* dout, int64_t batch,
                               int64_t streams, T* din) const = 0;

  /// The pooling's forward-mode derivative: dy = ∂pool(x)/∂x · dx for `batch` images (average pooling: the
  /// pooling of dx; max pooling: dx at the position of each window's maximum of x).
  virtual double pool_tangent(Pool kind, const ConvGeometry& g, const T* x, const T* dx, int64_t batch,
                              T* dy) const = 0;

  // ---- elementwise and reductions

  /// y = φ(z) for `batch` samples of `size` values.
  virtual double activation_forward(const Activation& a, const T* z, T* y, int64_t batch, int64_t size) const = 0;
  /// din[(b·streams + s)·size + i] = φ'(z[b·size + i]) · dout[(b·streams + s)·size + i]; din may be dout.
  /// z and y = φ(z) are the forward values of `batch` samples of `size` values.
  virtual double activation_backward(const Activation& a, const T* z, const T* y, const T* dout, T* din, int64_t batch,
                                     int64_t streams, int64_t size) const = 0;
  /// y[(b·channels + c)·positions + p] += alpha · bias[c] for b < batch.
  virtual double add_bias(T* y, int64_t batch, int64_t channels, int64_t positions, T alpha, const T* bias) const = 0;
  /// y[(r·channels + c)·positions + p] = scale[c] · x[(r·channels + c)·positions + p] + shift[c] for r < rows (shift
  /// may be null: 0); y may be x. A per-channel affine map (BatchNorm), or, with positions = 1, one per element of
  /// each row (LayerNorm's γ and β).
  virtual double channel_affine(const T* x, int64_t rows, int64_t channels, int64_t positions, const T* scale,
                                const T* shift, T* y) const = 0;
  /// Sums of products along one axis: each sample's values are an (outer × inner) row-major matrix; for derivative
  /// row (b, s), b < batch, s < streams, with d_bs = d + (b·streams + s)·outer·inner (or d + s·outer·inner for
  /// every b when `shared`) and x_b = x + b·outer·inner (x null: all ones),
  ///   over_inner:  y[(b·streams + s)·outer + r] = Σ_e d_bs[r·inner + e] · x_b[r·inner + e]   (along each row)
  ///   otherwise:   y[(b·streams + s)·inner + e] = Σ_r d_bs[r·inner + e] · x_b[r·inner + e]   (down each column)
  /// summed in increasing e (or r).
  virtual double weighted_sums(bool over_inner, int64_t batch, int64_t streams, int64_t outer, int64_t inner,
                               const T* d, bool shared, const T* x, T* y) const = 0;
  /// Layer normalisation of `rows` groups of `size` values: xhat = (x − μ)·inv with μ and σ² the group's mean and
  /// biased variance (two passes in increasing index, accumulated in double) and inv[r] = 1/√(σ² + eps).
  virtual double normalize(const T* x, int64_t rows, int64_t size, double eps, T* xhat, T* inv) const = 0;
  /// The normalisation's derivative ∂x̂/∂x = inv·(I − 11ᵀ/D − x̂x̂ᵀ/D), which is symmetric (so both the VJP and the
  /// JVP), applied to `streams` rows per sample: for sample b < batch, stream s and group g < groups, with
  /// u = d[((b·streams + s)·groups + g)·size + ·] and x̂, inv of group (b·groups + g),
  ///   din[…] = inv · (u − mean(u) − x̂ · mean(u ⊙ x̂))   (means over the `size` values; din may be d).
  virtual double normalize_derivative(const T* xhat, const T* inv, int64_t batch, int64_t streams, int64_t groups,
                                      int64_t size, const T* d, T* din) const = 0;
  /// y[r] = alpha · Σ_p x[r·positions + p] (a reduction over positions, summed in increasing p).
  virtual double sum_positions(const T* x, int64_t rows, int64_t positions, T alpha, T* y) const = 0;
  /// y[r·positions + p] = alpha · x[r] (the transpose of sum_positions).
  virtual double spread_positions(const T* x, int64_t rows, int64_t positions, T alpha, T* y) const = 0;
  /// y[c] += alpha · Σ_r x[r·cols + c] (summed in increasing r).
  virtual double sum_rows(const T* x, int64_t rows, int64_t cols, T alpha, T* y) const = 0;
  /// y += x (n values).
  virtual double add(int64_t n, const T* x, T* y) const = 0;
  /// y = x (n values).
  virtual void copy(int64_t n, const T* x, T* y) const = 0;
  /// y[t·n + i] = x[i] for t < times.
  virtual void repeat(const T* x, int64_t n, int64_t times, T* y) const = 0;
  /// y = value (n values).
  virtual void fill(int64_t n, T value, T* y) const = 0;
  /// y = alpha · y (n values).
  virtual double scale(int64_t n, T alpha, T* y) const = 0;
  /// y = the n × n identity.
  virtual void identity(int64_t n, T* y) const = 0;
  /// s = one sample pair's (o, o') block in the mode's layout (per = O², O or 1 values: every (o, o'), the
  /// diagonal, or its sum) from S (O × O, valid in its lower triangle): a block of deltas shared by all samples.
  virtual void pair_block(Mode mode, int64_t outputs, const T* S, T* s) const = 0;

  // ---- NTK blocks: components of sample pairs, written into a block (n1, n2, per) of the tile pair. With
  // `same` (the two sides are one batch) only pairs j ≤ i are needed, and a pair (i, i)'s (o, o') values must be
  // exactly symmetric. `bias` may be null, or equal to `w` (the total only: both terms into one block).

  /// Full mode: w[i, j, o, o'] += A[i, j] · D[(i, o), (j, o')] and bias[i, j, o, o'] += cb2 · D[(i, o), (j, o')],
  /// A (n1 × n2), D (n1·O × n2·O); with `same`, D is read in its lower triangle only.
  virtual double combine_full(int64_t n1, int64_t n2, int64_t outputs, bool same, const T* A, const T* D, T cb2, T* w,
                              T* bias) const = 0;
  /// One value per pair and output slot: w[(i·n2 + j)·per + slot] += A[i, j] · D[i, j] and bias[…] += cb2 · D[i, j]
  /// (trace: per = 1; diagonal: per = O, one call per output).
  virtual double combine_values(int64_t n1, int64_t n2, int64_t per, int64_t slot, bool same, const T* A, const T* D,
                                T cb2, T* w, T* bias) const = 0;
  /// Deltas shared by all samples: w[(i·n2 + j)·per + e] += A[i, j] · s[e] (skipped when A is null) and
  /// bias[…] += cb2 · s[e].
  virtual double combine_shared(int64_t n1, int64_t n2, int64_t per, bool same, const T* A, const T* s, T cb2, T* w,
                                T* bias) const = 0;
  /// Adds alpha · ⟨F_a(i, o), F_b(j, o')⟩ into dst (·, n2, per) in the mode's layout for samples i ∈ [i0, i0 + na)
  /// of side a and j ∈ [j0, j0 + nb) of side b, where row (i, o) of a side's features F lies at (i·O + o)·width
  /// and fa, fb point at samples i0 and j0. With `same`, a chunk with i0 == j0 (fa == fb) writes all its pairs
  /// from one triangle, and a chunk with i0 ≠ j0 also writes the mirrored pairs (j, i).
  virtual double feature_gram(Mode mode, int64_t outputs, const T* fa, int64_t i0, int64_t na, const T* fb, int64_t j0,
                              int64_t nb, int64_t width, T alpha, bool same, int64_t n2, T* dst) const = 0;
};

/// Memory a backend's buffers live in (host memory for the CPU and reference backends).
class Memory {
 public:
  virtual ~Memory() = default;
  /// A block of at least `bytes` (which becomes its capacity); contents unspecified.
  virtual void* acquire(size_t& bytes) const = 0;
  /// Hands a block back (a cache may keep it for later requests).
  virtual void give_back(void* p, size_t bytes) const = 0;
  /// Frees a block without caching it.
  virtual void free(void* p, size_t bytes) const = 0;
};

/// A compute backend: the primitives on float and on double, and its memory.
class Backend {
 public:
  virtual ~Backend() = default;
  /// "cpu (avx2)", "reference", …
  virtual std::string name() const = 0;
  virtual const Ops<float>& f32() const = 0;
  virtual const Ops<double>& f64() const = 0;
  virtual const Memory& memory() const = 0;

  template <class T>
  const Ops<T>& ops() const {
    if constexpr (sizeof(T) == 4)
      return f32();
    else
      return f64();
  }
};

/// The host block cache (lib/cpu/cache.hpp) as a Memory.
const Memory& host_memory();

/// The process-wide backend of a name: "cpu" (the fastest instruction set this CPU has) or "reference".
/// xntk::Error for other names.
const Backend& get(const std::string& name);

/// The names `get` accepts.
std::vector<std::string> names();

}  // namespace xntk::backend
