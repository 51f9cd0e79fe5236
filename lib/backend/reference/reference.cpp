// The reference backend: each primitive written from its definition in backend.hpp with plain loops (no
// BLAS, no threads, no skipped zeros, no im2col), in double-checked index arithmetic that reads like the
// formula. Sums accumulate in T in the obvious order; FLOPs are those of the dense definition.

#include "backend/reference/reference.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/activation_fn.hpp"

namespace xntk::backend::reference {

namespace {

double mnk(int64_t m, int64_t n, int64_t k) {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

int64_t per_pair(int64_t outputs, Mode mode) {
  return mode == Mode::full ? outputs * outputs : mode == Mode::diagonal ? outputs : 1;
}

/// Input value x[c, row, col] of a (C, H, W) image, 0 outside it (the zero padding).
template <class T>
T pixel(const ConvGeometry& g, const T* x, int64_t c, int64_t row, int64_t col) {
  if (row < 0 || row >= g.height || col < 0 || col >= g.width) return T(0);
  return x[(c * g.height + row) * g.width + col];
}

/// U[k, p] of the patch matrix: k = (c, i, j), p = (y, x).
template <class T>
T patch(const ConvGeometry& g, const T* x, int64_t k, int64_t p) {
  const int64_t c = k / (g.kernel_h * g.kernel_w), i = k / g.kernel_w % g.kernel_h, j = k % g.kernel_w;
  const int64_t y = p / g.out_w(), xo = p % g.out_w();
  return pixel(g, x, c, y * g.stride_h + i * g.dilation_h - g.pad_h, xo * g.stride_w + j * g.dilation_w - g.pad_w);
}

template <class T>
class ReferenceOps final : public Ops<T> {
 public:
  double gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
              int64_t ldb, T beta, T* c, int64_t ldc) const override {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        T s = 0;
        for (int64_t q = 0; q < k; ++q)
          s += (ta ? a[q * lda + i] : a[i * lda + q]) * (tb ? b[j * ldb + q] : b[q * ldb + j]);
        c[i * ldc + j] = alpha * s + (beta == T(0) ? T(0) : beta * c[i * ldc + j]);
      }
    return mnk(m, n, k);
  }

  double gram(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
              int64_t ldc) const override {
    return gemm(false, true, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }

  double syrk_lower(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c, int64_t ldc) const override {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        T s = 0;
        for (int64_t q = 0; q < k; ++q) s += a[i * lda + q] * a[j * lda + q];
        c[i * ldc + j] = alpha * s + (beta == T(0) ? T(0) : beta * c[i * ldc + j]);
      }
    return static_cast<double>(n) * static_cast<double>(n + 1) * static_cast<double>(k);
  }

  double linear(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) const override {
    return gemm(false, true, batch, n, k, alpha, x, k, w, k, T(0), y, n);
  }

  double product_skipping_zeros(const Groups& g, int64_t k, int64_t n, T alpha, const T* dout, const T* w, T* din,
                                const T*, int64_t) const override {
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t r = 0; r < g.rows; ++r) {
        const T* d = dout + grp * g.in_group + r * g.in_row;
        T* out = din + grp * g.out_group + r * g.out_row;
        for (int64_t j = 0; j < n; ++j) {
          T s = 0;
          for (int64_t q = 0; q < k; ++q) s += d[q] * w[q * n + j];
          out[j] = alpha * s;
        }
      }
    return mnk(g.groups * g.rows, n, k);
  }

  double delta_gram(int64_t g1, int64_t g2, int64_t R, int64_t k, const T* a, const T* b, int64_t ld, bool, T alpha,
                    T* d, int64_t ldd) const override {
    return gemm(false, true, g1 * R, g2 * R, k, alpha, a, ld, b, ld, T(0), d, ldd);
  }

  double conv_forward(const ConvGeometry& g, int64_t C, T alpha, const T* w, const T* x, int64_t batch,
                      T* y) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t co = 0; co < C; ++co)
        for (int64_t p = 0; p < P; ++p) {
          T sum = 0;
          for (int64_t k = 0; k < K; ++k) sum += w[co * K + k] * patch(g, x + s * n_in, k, p);
          y[(s * C + co) * P + p] = alpha * sum;
        }
    return mnk(batch * C, K, P);
  }

  double conv_backward(const ConvGeometry& g, int64_t C, T alpha, const T* w, const T* dout, int64_t rows,
                       T* din) const override {
    // din[c, row, col] = alpha · Σ over (co, p, k) whose patch entry U[k, p] reads input (c, row, col)
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    const int64_t kk = g.kernel_h * g.kernel_w;
    for (int64_t r = 0; r < rows; ++r) {
      T* out = din + r * n_in;
      std::fill(out, out + n_in, T(0));
      for (int64_t co = 0; co < C; ++co)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t k = 0; k < K; ++k) {
            const int64_t c = k / kk, i = k / g.kernel_w % g.kernel_h, j = k % g.kernel_w;
            const int64_t row = p / g.out_w() * g.stride_h + i * g.dilation_h - g.pad_h;
            const int64_t col = p % g.out_w() * g.stride_w + j * g.dilation_w - g.pad_w;
            if (row < 0 || row >= g.height || col < 0 || col >= g.width) continue;
            out[(c * g.height + row) * g.width + col] += alpha * w[co * K + k] * dout[(r * C + co) * P + p];
          }
    }
    return mnk(rows * C, K, P);
  }

  double conv_gradients(const ConvGeometry& g, int64_t C, int64_t streams, const T* x, int64_t n, const T* delta,
                        bool shared, T* G) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width, rows = streams * C;
    for (int64_t s = 0; s < n; ++s) {
      const T* d = shared ? delta : delta + s * rows * P;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < K; ++k) {
          T sum = 0;
          for (int64_t p = 0; p < P; ++p) sum += d[r * P + p] * patch(g, x + s * n_in, k, p);
          G[(s * rows + r) * K + k] = sum;
        }
    }
    return mnk(n * rows, K, P);
  }

  double conv_weight_gradient(const ConvGeometry& g, int64_t C, const T* x, int64_t n, const T* delta, T alpha,
                              T* dw) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    for (int64_t r = 0; r < C; ++r)
      for (int64_t k = 0; k < K; ++k) {
        T sum = 0;
        for (int64_t s = 0; s < n; ++s)
          for (int64_t p = 0; p < P; ++p) sum += delta[(s * C + r) * P + p] * patch(g, x + s * n_in, k, p);
        dw[r * K + k] += alpha * sum;
      }
    return mnk(n * C, K, P);
  }

  double conv_positions(const ConvGeometry& g, int64_t C, int64_t O, Mode mode, int64_t n1, int64_t n2, bool same,
                        const T* xa, const T* da, bool shared_a, const T* xb, const T* db, bool shared_b, T alpha,
                        T* out) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width, per = per_pair(O, mode);
    if (same) {
      xb = xa;
      db = da;
      shared_b = shared_a;
    }
    std::vector<T> uu(static_cast<size_t>(P * P));
    for (int64_t i = 0; i < n1; ++i)
      for (int64_t j = 0; j < (same ? i + 1 : n2); ++j) {
        // ⟨U_i[:, p], U'_j[:, q]⟩ for every pair of positions
        for (int64_t p = 0; p < P; ++p)
          for (int64_t q = 0; q < P; ++q) {
            T s = 0;
            for (int64_t k = 0; k < K; ++k) s += patch(g, xa + i * n_in, k, p) * patch(g, xb + j * n_in, k, q);
            uu[static_cast<size_t>(p * P + q)] = s;
          }
        const T* di = shared_a ? da : da + i * O * C * P;
        const T* dj = shared_b ? db : db + j * O * C * P;
        auto theta = [&](int64_t o, int64_t q) {  // Σ_{c,p,q'} δ_o[c,p] UU[p,q'] δ'_q[c,q']
          T s = 0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t p = 0; p < P; ++p)
              for (int64_t r = 0; r < P; ++r)
                s += di[(o * C + c) * P + p] * uu[static_cast<size_t>(p * P + r)] * dj[(q * C + c) * P + r];
          return s;
        };
        std::vector<T> v(static_cast<size_t>(per), T(0));
        for (int64_t o = 0; o < O; ++o) {
          if (mode == Mode::full)
            for (int64_t q = 0; q < O; ++q) v[static_cast<size_t>(o * O + q)] = alpha * theta(o, q);
          else if (mode == Mode::diagonal)
            v[static_cast<size_t>(o)] = alpha * theta(o, o);
          else
            v[0] += alpha * theta(o, o);
        }
        for (int64_t e = 0; e < per; ++e) out[(i * n2 + j) * per + e] += v[static_cast<size_t>(e)];
        if (same && i != j)
          for (int64_t e = 0; e < per; ++e) {
            const int64_t f = mode == Mode::full ? (e % O) * O + e / O : e;  // (o, o') → (o', o)
            out[(j * n2 + i) * per + f] += v[static_cast<size_t>(e)];
          }
      }
    const double pairs = same ? 0.5 * static_cast<double>(n1 * (n1 + 1)) : static_cast<double>(n1 * n2);
    return pairs * 2.0 * static_cast<double>(P * P * K + O * C * P * P);
  }

  double pool_forward(Pool kind, const ConvGeometry& g, const T* x, int64_t batch, T* y) const override {
    const int64_t oh = g.out_h(), ow = g.out_w(), n_in = g.channels * g.height * g.width;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t q = 0; q < ow; ++q) {
            const int64_t k = window_pick(kind, g, x + b * n_in, c, r, q);
            T v = 0;
            if (kind == Pool::max) {
              v = x[b * n_in + k];
            } else {
              for (int64_t i = 0; i < g.kernel_h; ++i)
                for (int64_t j = 0; j < g.kernel_w; ++j)
                  v += pixel(g, x + b * n_in, c, r * g.stride_h + i - g.pad_h, q * g.stride_w + j - g.pad_w);
              v /= T(g.kernel_h * g.kernel_w);
            }
            y[((b * g.channels + c) * oh + r) * ow + q] = v;
          }
    return static_cast<double>(batch * g.channels * oh * ow * g.kernel_h * g.kernel_w);
  }

  double pool_backward(Pool kind, const ConvGeometry& g, const T* x, const T* dout, int64_t batch, int64_t streams,
                       T* din) const override {
    const int64_t oh = g.out_h(), ow = g.out_w(), H = g.height, W = g.width, n_in = g.channels * H * W;
    const int64_t n_out = g.channels * oh * ow;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < streams; ++s) {
        T* out = din + (b * streams + s) * n_in;
        const T* d = dout + (b * streams + s) * n_out;
        std::fill(out, out + n_in, T(0));
        for (int64_t c = 0; c < g.channels; ++c)
          for (int64_t r = 0; r < oh; ++r)
            for (int64_t q = 0; q < ow; ++q) {
              const T v = d[(c * oh + r) * ow + q];
              if (kind == Pool::max) {
                out[window_pick(kind, g, x + b * n_in, c, r, q)] += v;
                continue;
              }
              for (int64_t i = 0; i < g.kernel_h; ++i)
                for (int64_t j = 0; j < g.kernel_w; ++j) {
                  const int64_t row = r * g.stride_h + i - g.pad_h, col = q * g.stride_w + j - g.pad_w;
                  if (row >= 0 && row < H && col >= 0 && col < W)
                    out[(c * H + row) * W + col] += v / T(g.kernel_h * g.kernel_w);
                }
            }
      }
    return static_cast<double>(batch * streams * n_out * g.kernel_h * g.kernel_w);
  }

  double pool_tangent(backend::Pool kind, const ConvGeometry& g, const T* x, const T* dx, int64_t batch,
                      T* dy) const override {
    if (kind == backend::Pool::average) return pool_forward(kind, g, dx, batch, dy);
    const int64_t oh = g.out_h(), ow = g.out_w(), n_in = g.channels * g.height * g.width;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t q = 0; q < ow; ++q)
            dy[((b * g.channels + c) * oh + r) * ow + q] = dx[b * n_in + window_pick(kind, g, x + b * n_in, c, r, q)];
    return 0;
  }

  double activation_forward(const Activation& a, const T* z, T* y, int64_t batch, int64_t size) const override {
    for (int64_t i = 0; i < batch * size; ++i) y[i] = detail::activation_value<T>(a, z[i]);
    return static_cast<double>(batch * size);
  }

  double activation_backward(const Activation& a, const T* z, const T* y, const T* dout, T* din, int64_t batch,
                             int64_t streams, int64_t size) const override {
    detail::with_derivative<T>(a, [&](auto derivative) {
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t s = 0; s < streams; ++s)
          for (int64_t i = 0; i < size; ++i) {
            const int64_t e = (b * streams + s) * size + i;
            din[e] = derivative(z[b * size + i], y[b * size + i]) * dout[e];
          }
    });
    return static_cast<double>(batch * streams * size);
  }

  double add_bias(T* y, int64_t batch, int64_t channels, int64_t positions, T alpha, const T* bias) const override {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t p = 0; p < positions; ++p) y[(b * channels + c) * positions + p] += alpha * bias[c];
    return static_cast<double>(batch * channels * positions);
  }

  double channel_affine(const T* x, int64_t rows, int64_t channels, int64_t positions, const T* scale, const T* shift,
                        T* y) const override {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t p = 0; p < positions; ++p) {
          const int64_t e = (r * channels + c) * positions + p;
          y[e] = scale[c] * x[e] + (shift ? shift[c] : T(0));
        }
    return 2.0 * static_cast<double>(rows * channels * positions);
  }

  double weighted_sums(bool over_inner, int64_t batch, int64_t streams, int64_t outer, int64_t inner, const T* d,
                       bool shared, const T* x, T* y) const override {
    const int64_t n = outer * inner;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < streams; ++s) {
        const T* ds = d + (shared ? s : b * streams + s) * n;
        auto term = [&](int64_t r, int64_t e) { return ds[r * inner + e] * (x ? x[b * n + r * inner + e] : T(1)); };
        T* out = y + (b * streams + s) * (over_inner ? outer : inner);
        if (over_inner)
          for (int64_t r = 0; r < outer; ++r) {
            T sum = 0;
            for (int64_t e = 0; e < inner; ++e) sum += term(r, e);
            out[r] = sum;
          }
        else
          for (int64_t e = 0; e < inner; ++e) {
            T sum = 0;
            for (int64_t r = 0; r < outer; ++r) sum += term(r, e);
            out[e] = sum;
          }
      }
    return (x ? 2.0 : 1.0) * static_cast<double>(batch * streams * n);
  }

  double normalize(const T* x, int64_t rows, int64_t size, double eps, T* xhat, T* inv) const override {
    for (int64_t r = 0; r < rows; ++r) {
      const T* v = x + r * size;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < size; ++i) mean += static_cast<double>(v[i]);
      mean /= static_cast<double>(size);
      for (int64_t i = 0; i < size; ++i) var += (static_cast<double>(v[i]) - mean) * (static_cast<double>(v[i]) - mean);
      var /= static_cast<double>(size);
      const double s = 1.0 / std::sqrt(var + eps);
      inv[r] = T(s);
      for (int64_t i = 0; i < size; ++i) xhat[r * size + i] = T((static_cast<double>(v[i]) - mean) * s);
    }
    return 5.0 * static_cast<double>(rows * size);
  }

  double normalize_derivative(const T* xhat, const T* inv, int64_t batch, int64_t streams, int64_t groups, int64_t size,
                              const T* d, T* din) const override {
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < streams; ++s)
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t row = (b * streams + s) * groups + g, grp = b * groups + g;
          const T* u = d + row * size;
          const T* xh = xhat + grp * size;
          double m1 = 0, m2 = 0;
          for (int64_t i = 0; i < size; ++i) {
            m1 += static_cast<double>(u[i]);
            m2 += static_cast<double>(u[i]) * static_cast<double>(xh[i]);
          }
          m1 /= static_cast<double>(size);
          m2 /= static_cast<double>(size);
          for (int64_t i = 0; i < size; ++i)
            din[row * size + i] =
                T(static_cast<double>(inv[grp]) * (static_cast<double>(u[i]) - m1 - static_cast<double>(xh[i]) * m2));
        }
    return 6.0 * static_cast<double>(batch * streams * groups * size);
  }

  double sum_positions(const T* x, int64_t rows, int64_t positions, T alpha, T* y) const override {
    for (int64_t r = 0; r < rows; ++r) {
      T s = 0;
      for (int64_t p = 0; p < positions; ++p) s += x[r * positions + p];
      y[r] = alpha * s;
    }
    return static_cast<double>(rows * positions);
  }

  double spread_positions(const T* x, int64_t rows, int64_t positions, T alpha, T* y) const override {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t p = 0; p < positions; ++p) y[r * positions + p] = alpha * x[r];
    return static_cast<double>(rows);
  }

  double sum_rows(const T* x, int64_t rows, int64_t cols, T alpha, T* y) const override {
    for (int64_t c = 0; c < cols; ++c) {
      T s = 0;
      for (int64_t r = 0; r < rows; ++r) s += x[r * cols + c];
      y[c] += alpha * s;
    }
    return static_cast<double>(rows * cols + cols);
  }

  double add(int64_t n, const T* x, T* y) const override {
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
    return static_cast<double>(n);
  }
  void copy(int64_t n, const T* x, T* y) const override { std::copy(x, x + n, y); }
  void repeat(const T* x, int64_t n, int64_t times, T* y) const override {
    for (int64_t t = 0; t < times; ++t) std::copy(x, x + n, y + t * n);
  }
  void fill(int64_t n, T value, T* y) const override { std::fill(y, y + n, value); }
  double scale(int64_t n, T alpha, T* y) const override {
    for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
    return static_cast<double>(n);
  }
  void identity(int64_t n, T* y) const override {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * n + j] = i == j ? T(1) : T(0);
  }
  void pair_block(Mode mode, int64_t O, const T* S, T* s) const override {
    auto at = [&](int64_t o, int64_t p) { return o >= p ? S[o * O + p] : S[p * O + o]; };
    if (mode == Mode::full)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t p = 0; p < O; ++p) s[o * O + p] = at(o, p);
    if (mode == Mode::diagonal)
      for (int64_t o = 0; o < O; ++o) s[o] = at(o, o);
    if (mode == Mode::trace) {
      s[0] = 0;
      for (int64_t o = 0; o < O; ++o) s[0] += at(o, o);
    }
  }

  double combine_full(int64_t n1, int64_t n2, int64_t O, bool same, const T* A, const T* D, T cb2, T* w,
                      T* bias) const override {
    const int64_t r2 = n2 * O;
    for (int64_t i = 0; i < n1; ++i)
      for (int64_t j = 0; j < n2; ++j)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t p = 0; p < O; ++p) {
            int64_t row = i * O + o, col = j * O + p;
            if (same && row < col) std::swap(row, col);  // D is valid in its lower triangle only
            const T d = D[row * r2 + col];
            const int64_t e = ((i * n2 + j) * O + o) * O + p;
            w[e] += A[i * n2 + j] * d;
            if (bias) bias[e] += cb2 * d;
          }
    return (bias ? 4.0 : 2.0) * static_cast<double>(n1 * n2 * O * O);
  }

  double combine_values(int64_t n1, int64_t n2, int64_t per, int64_t slot, bool same, const T* A, const T* D, T cb2,
                        T* w, T* bias) const override {
    for (int64_t i = 0; i < n1; ++i)
      for (int64_t j = 0; j < n2; ++j) {
        const T d = same && j > i ? D[j * n2 + i] : D[i * n2 + j];
        w[(i * n2 + j) * per + slot] += A[i * n2 + j] * d;
        if (bias) bias[(i * n2 + j) * per + slot] += cb2 * d;
      }
    return (bias ? 4.0 : 2.0) * static_cast<double>(n1 * n2);
  }

  double combine_shared(int64_t n1, int64_t n2, int64_t per, bool, const T* A, const T* s, T cb2, T* w,
                        T* bias) const override {
    for (int64_t i = 0; i < n1; ++i)
      for (int64_t j = 0; j < n2; ++j)
        for (int64_t e = 0; e < per; ++e) {
          if (A) w[(i * n2 + j) * per + e] += A[i * n2 + j] * s[e];
          if (bias) bias[(i * n2 + j) * per + e] += cb2 * s[e];
        }
    return ((A ? 2.0 : 0.0) + (bias ? 2.0 : 0.0)) * static_cast<double>(n1 * n2 * per);
  }

  double feature_gram(Mode mode, int64_t O, const T* fa, int64_t i0, int64_t na, const T* fb, int64_t j0, int64_t nb,
                      int64_t width, T alpha, bool same, int64_t n2, T* dst) const override {
    const int64_t per = per_pair(O, mode);
    auto feature_dot = [&](int64_t i, int64_t o, int64_t j, int64_t q) {
      T s = 0;
      for (int64_t k = 0; k < width; ++k) s += fa[(i * O + o) * width + k] * fb[(j * O + q) * width + k];
      return s;
    };
    for (int64_t i = 0; i < na; ++i)
      for (int64_t j = 0; j < nb; ++j) {
        std::vector<T> v(static_cast<size_t>(per), T(0));
        for (int64_t o = 0; o < O; ++o) {
          if (mode == Mode::full)
            for (int64_t q = 0; q < O; ++q) v[static_cast<size_t>(o * O + q)] = alpha * feature_dot(i, o, j, q);
          else if (mode == Mode::diagonal)
            v[static_cast<size_t>(o)] = alpha * feature_dot(i, o, j, o);
          else
            v[0] += alpha * feature_dot(i, o, j, o);
        }
        for (int64_t e = 0; e < per; ++e) dst[((i0 + i) * n2 + j0 + j) * per + e] += v[static_cast<size_t>(e)];
        if (same && i0 != j0)
          for (int64_t e = 0; e < per; ++e) {
            const int64_t f = mode == Mode::full ? (e % O) * O + e / O : e;
            dst[((j0 + j) * n2 + i0 + i) * per + f] += v[static_cast<size_t>(e)];
          }
      }
    return mnk(na * O, nb * O, width);
  }

 private:
  /// The input index (within the image) a max window picks, or for average pooling any index (unused).
  static int64_t window_pick(Pool kind, const ConvGeometry& g, const T* x, int64_t c, int64_t r, int64_t q) {
    if (kind != Pool::max) return 0;
    int64_t best = -1;
    for (int64_t i = 0; i < g.kernel_h; ++i)
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t row = r * g.stride_h + i * g.dilation_h - g.pad_h,
                      col = q * g.stride_w + j * g.dilation_w - g.pad_w;
        if (row < 0 || row >= g.height || col < 0 || col >= g.width) continue;
        const int64_t k = (c * g.height + row) * g.width + col;
        if (best < 0 || x[k] > x[best] || std::isnan(x[k])) best = k;
      }
    return best;
  }
};

class ReferenceBackend final : public Backend {
 public:
  std::string name() const override { return "reference"; }
  const Ops<float>& f32() const override { return f32_; }
  const Ops<double>& f64() const override { return f64_; }
  const Memory& memory() const override { return host_memory(); }

 private:
  ReferenceOps<float> f32_;
  ReferenceOps<double> f64_;
};

}  // namespace

const Backend& instance() {
  static const ReferenceBackend b;
  return b;
}

}  // namespace xntk::backend::reference
