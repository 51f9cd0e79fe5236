// The explicit driver: tiles of samples, a forward pass per tile, then one backward sweep of the O
// output-derivative streams in which every parameterised layer adds its closed-form components.

#include "xntk/kernel.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "batch.hpp"
#include "cpu/backend.hpp"
#include "cpu/grain.hpp"
#include "cpu/masked_product.hpp"
#include "layer.hpp"

namespace xntk {

const char* name(Mode mode) {
  switch (mode) {
    case Mode::full: return "full";
    case Mode::trace: return "trace";
    case Mode::diagonal: return "diagonal";
  }
  return "?";
}

namespace detail {

ThreadScope::ThreadScope(int threads) {
#ifdef _OPENMP
  previous_ = omp_get_max_threads();
  if (threads > 0) omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

ThreadScope::~ThreadScope() {
#ifdef _OPENMP
  omp_set_num_threads(previous_);
#endif
}

namespace {

/// Bytes of memory the system reports as available (MemAvailable), or all physical memory.
double available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

constexpr double kKeepWorkspaceBytes = 32.0 * 1024 * 1024;

/// Forward values and the current output-derivative streams of one tile of samples.
template <class T>
struct Pass {
  const T* x = nullptr;           // the tile's rows of the caller's batch (not copied)
  std::vector<Buffer<T>> values;  // values[l]: output of layer l − 1 (values[0] unused)
  Buffer<T> delta, next;          // (batch·O, size of the current layer's output)
  bool identity = true;           // δ_o = e_o (not materialised)
  bool shared = false;            // delta holds O rows shared by every sample of the tile
  int64_t batch = 0;
  /// Input of layer l.
  const T* in(int l) const { return l == 0 ? x : values[static_cast<size_t>(l)].data(); }
};

template <class T>
void run_forward(const Sequential<T>& model, const T* x, int64_t batch, Pass<T>& p, double& flops) {
  const int L = model.num_layers();
  p.batch = batch;
  p.x = x;
  p.values.clear();
  p.values.resize(static_cast<size_t>(L + 1));
  for (int l = 0; l < L; ++l) {
    const auto& layer = model.layer(l);
    p.values[l + 1].resize(batch * layer.out_size());
    layer.forward(p.in(l), p.values[l + 1].data(), batch);
    flops += layer.forward_flops(batch);
  }
}

/// Identity deltas written out, as O shared rows.
template <class T>
void materialize(Pass<T>& p, int64_t outputs) {
  if (!p.identity) return;
  p.delta.resize(outputs * outputs);
  std::fill(p.delta.data(), p.delta.data() + outputs * outputs, T(0));
  for (int64_t o = 0; o < outputs; ++o) p.delta[o * outputs + o] = T(1);
  p.identity = false;
  p.shared = true;
}

/// Shared deltas (O rows of `size`) repeated for every sample of the tile into `dst`.
template <class T>
void expand(const Pass<T>& p, int64_t outputs, int64_t size, Buffer<T>& dst) {
  const int64_t rows = outputs * size;
  dst.resize(p.batch * rows);
  parallel_for_work(p.batch, static_cast<double>(rows),
                    [&](int64_t b) { std::copy(p.delta.data(), p.delta.data() + rows, dst.data() + b * rows); });
}

/// δ through layer l: from its output to its input. Frees the layer's output values. Shared deltas stay
/// shared through layers whose backward is a fixed linear map (one product instead of one per sample).
/// `below` (layer l − 1, or null): when it is a ReLU, its input gates layer l's backward.
template <class T>
void step_back(const Layer<T>& layer, const Layer<T>* below, Pass<T>& p, int64_t outputs, double& flops) {
  materialize(p, outputs);
  const int l = layer.index();
  const bool stays_shared = p.shared && layer.input_independent_backward();
  if (p.shared && !stays_shared) {
    expand(p, outputs, layer.out_size(), p.next);
    p.delta.swap(p.next);
    p.shared = false;
  }
  const int64_t batch = stays_shared ? 1 : p.batch;
  const double skipped = masked_skipped_flops;  // the masked Linear backward reports what it skipped
  const T* in = stays_shared ? nullptr : p.in(l);
  const T* out = stays_shared ? nullptr : p.values[l + 1].data();
  const T* gate = !stays_shared && below && below->gates_below_zero() ? p.in(l - 1) : nullptr;
  if (!stays_shared && layer.in_place_backward()) {
    layer.backward_gated(in, out, p.delta.data(), p.delta.data(), batch, outputs, gate);
  } else {
    p.next.resize(batch * outputs * layer.in_size());
    layer.backward_gated(in, out, p.delta.data(), p.next.data(), batch, outputs, gate);
    p.delta.swap(p.next);
  }
  flops += layer.backward_flops(batch, outputs) - (masked_skipped_flops - skipped);
  p.next.release();
  p.values[l + 1].release();
}

/// Copies a tile block (n1, n2, per) into the kernel at (i0, j0); with `mirror`, also its transpose
/// (samples and, in full mode, outputs swapped) at (j0, i0).
template <class T>
void scatter(const T* block, int64_t n1, int64_t n2, int64_t i0, int64_t j0, int64_t cols, int64_t outputs, Mode mode,
             bool mirror, T* dst) {
  const int64_t per = per_pair(outputs, mode);
  parallel_for_work(n1, static_cast<double>(n2 * per * (mirror ? 2 : 1)), [&](int64_t i) {
    for (int64_t j = 0; j < n2; ++j) {
      const T* src = block + (i * n2 + j) * per;
      std::copy(src, src + per, dst + ((i0 + i) * cols + j0 + j) * per);
      if (!mirror) continue;
      T* t = dst + ((j0 + j) * cols + i0 + i) * per;
      if (mode == Mode::full) {
        for (int64_t o = 0; o < outputs; ++o)
          for (int64_t q = 0; q < outputs; ++q) t[q * outputs + o] = src[o * outputs + q];
      } else {
        std::copy(src, src + per, t);
      }
    }
  });
}

/// Θ(X, X) from its lower triangle of sample pairs: block (i, j > i) becomes block (j, i) with, in full
/// mode, the outputs swapped. Copies only, so the result is exactly symmetric.
template <class T>
void mirror_samples(T* k, int64_t n, int64_t outputs, Mode mode) {
  const int64_t per = per_pair(outputs, mode), b = 32, blocks = (n + b - 1) / b;
  // block row bi has blocks − bi blocks to fill: parallel_rows' pairing balances them
  parallel_rows(blocks, blocks, true, static_cast<double>(b * b * per), [&](int64_t bi) {
    const int64_t i0 = bi * b, i1 = std::min(n, i0 + b);
    for (int64_t j0 = i0; j0 < n; j0 += b) {
      const int64_t j1 = std::min(n, j0 + b);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t js = std::max(j0, i + 1);
        if (per == 1) {
          for (int64_t j = js; j < j1; ++j) k[i * n + j] = k[j * n + i];
          continue;
        }
        for (int64_t j = js; j < j1; ++j) {
          const T* src = k + (j * n + i) * per;
          T* dst = k + (i * n + j) * per;
          if (mode == Mode::full) {
            for (int64_t o = 0; o < outputs; ++o)
              for (int64_t q = 0; q < outputs; ++q) dst[o * outputs + q] = src[q * outputs + o];
          } else {
            std::copy(src, src + per, dst);
          }
        }
      }
    }
  });
}

/// Working bytes of one tile pair of n1 × n2 samples.
template <class T>
double tile_bytes(const Sequential<T>& model, int64_t n1, int64_t n2, Mode mode, bool components) {
  const int64_t O = model.outputs();
  double values = 0, widest = 0, layer_extra = 0;
  for (int l = 0; l < model.num_layers(); ++l) {
    const auto& layer = model.layer(l);
    values += static_cast<double>(layer.out_size());
    widest = std::max({widest, static_cast<double>(layer.out_size()), static_cast<double>(layer.in_size())});
    layer_extra = std::max(layer_extra, layer.component_bytes(n1, n2, O));
  }
  const double side = static_cast<double>(sizeof(T)) * (values + 2.0 * static_cast<double>(O) * widest);
  const double blocks =
      static_cast<double>(sizeof(T)) * static_cast<double>(n1 * n2 * per_pair(O, mode)) * (components ? 3.0 : 1.0);
  return side * static_cast<double>(n1 + n2) + blocks + layer_extra;
}

template <class T>
Kernel<T> explicit_ntk(const Sequential<T>& model, const Tensor<T>& x1, const Tensor<T>* x2, const KernelOptions& opt) {
  ThreadScope threads(opt.threads);
  const bool same = x2 == nullptr;
  const int64_t n = check_batch(model, x1, "x1");
  const int64_t m = same ? n : check_batch(model, *x2, "x2");
  const int64_t O = model.outputs(), per = per_pair(O, opt.mode), in = numel(model.input_shape());
  const int L = model.num_layers();
  if (opt.tile < 0) throw Error("kernel: tile must be 0 (automatic) or positive, got " + std::to_string(opt.tile));
  if (opt.memory_budget < 0) throw Error("kernel: memory_budget must be 0 (automatic) or positive");

  std::vector<int> with_params;  // outermost first
  Kernel<T> k;
  for (int l = L - 1; l >= 0; --l) {
    const auto params = model.layer(l).parameters();
    if (params.empty()) continue;
    with_params.push_back(l);
    for (const auto& p : params) k.names.push_back(p.name);
  }
  const Shape shape = kernel_shape(n, m, O, opt.mode);
  const double out_bytes = static_cast<double>(sizeof(T)) * static_cast<double>(numel(shape)) *
                           static_cast<double>(1 + (opt.components ? k.names.size() : 0));
  const double avail = available_bytes();
  if (out_bytes > 0.9 * avail)
    throw Error("kernel: the result needs " + std::to_string(out_bytes / 1e9) + " GB but only " +
                std::to_string(avail / 1e9) + " GB of memory is available; use trace or diagonal mode, fewer " +
                "samples, or no components");
  k.total = Tensor<T>(shape, zeroed_vector<T>(numel(shape)));
  if (opt.components)
    for (size_t c = 0; c < k.names.size(); ++c) k.components.emplace_back(shape, zeroed_vector<T>(numel(shape)));
  if (with_params.empty()) return k;
  const int first = with_params.back();

  const double budget = opt.memory_budget > 0 ? static_cast<double>(opt.memory_budget) : 0.5 * (avail - out_bytes);
  int64_t tile = opt.tile > 0 ? opt.tile : std::max(n, m);
  if (opt.tile == 0)
    while (tile > 1 && tile_bytes(model, std::min(tile, n), std::min(tile, m), opt.mode, opt.components) > budget)
      tile = (tile + 1) / 2;
  if (tile_bytes(model, std::min(tile, n), std::min(tile, m), opt.mode, opt.components) > budget && opt.tile == 0)
    throw Error("kernel: even one sample per tile needs more than the memory budget of " +
                std::to_string(budget / 1e6) + " MB");
  k.tile = tile;
  for (int l : with_params) {
    const std::string method = model.layer(l).method(std::min(tile, n), std::min(tile, m), O);
    if (!method.empty()) k.methods.push_back(std::to_string(l) + ": " + method);
  }

  const int64_t tiles_n = (n + tile - 1) / tile, tiles_m = (m + tile - 1) / tile;
  const int64_t steps = (same ? tiles_n * (tiles_n + 1) / 2 : tiles_n * tiles_m) * (L - first);
  int64_t done = 0;
  const T* data2 = same ? x1.data() : x2->data();
  // One tile pair covering everything writes straight into the results; otherwise blocks are
  // accumulated in buffers and scattered (mirrored too when X2 is omitted).
  const bool whole = tile >= n && tile >= m;
  std::vector<T> acc, wbuf, bbuf, scratch;
  Buffer<T> expanded_a, expanded_b;
  Workspace<T> workspace;
  for (int64_t i0 = 0; i0 < n; i0 += tile) {
    for (int64_t j0 = same ? i0 : 0; j0 < m; j0 += tile) {
      const int64_t n1 = std::min(tile, n - i0), n2 = std::min(tile, m - j0);
      const bool diag = same && i0 == j0;
      Pass<T> a, b;
      run_forward(model, x1.data() + i0 * in, n1, a, k.flops);
      if (!diag) run_forward(model, data2 + j0 * in, n2, b, k.flops);
      Pass<T>& pb = diag ? a : b;
      const size_t block = static_cast<size_t>(n1 * n2 * per);
      if (!whole) acc.assign(block, T(0));
      T* total = whole ? k.total.data() : acc.data();
      size_t c = 0;
      for (int l = L - 1; l >= first; --l) {
        const auto& layer = model.layer(l);
        const auto params = layer.parameters();
        if (!params.empty()) {
          if (a.identity && !layer.accepts_identity_delta()) {
            materialize(a, O);
            materialize(pb, O);
          }
          Side<T> sa{a.in(l), a.identity ? nullptr : a.delta.data(), n1, a.shared};
          Side<T> sb{pb.in(l), pb.identity ? nullptr : pb.delta.data(), n2, pb.shared};
          if (a.shared && !layer.accepts_shared_delta()) {  // a per-sample copy for this layer only
            expand(a, O, layer.out_size(), expanded_a);
            sa.delta = expanded_a.data();
            sa.shared = false;
            if (!diag) expand(pb, O, layer.out_size(), expanded_b);
            sb.delta = diag ? expanded_a.data() : expanded_b.data();
            sb.shared = false;
          }
          ComponentTarget<T> target{opt.mode, O, diag, total, total, &k.flops, &workspace};
          const bool has_bias = params.size() > 1;
          if (opt.components) {
            // each component into its own block, then added to the total
            if (whole) {
              target.weight = k.components[c].data();
              scratch.assign(has_bias ? 0 : block, T(0));
              target.bias = has_bias ? k.components[c + 1].data() : scratch.data();
            } else {
              wbuf.assign(block, T(0));
              bbuf.assign(block, T(0));
              target.weight = wbuf.data();
              target.bias = bbuf.data();
            }
          }
          layer.components(sa, sb, target);
          if (opt.components) {
            const T* cw = target.weight;
            const T* cb = target.bias;
            parallel_for_work(n1, static_cast<double>(n2 * per), [&](int64_t i) {
              for (size_t e = i * n2 * per; e < static_cast<size_t>((i + 1) * n2 * per); ++e)
                total[e] += has_bias ? cw[e] + cb[e] : cw[e];
            });
            if (!whole) {
              scatter(wbuf.data(), n1, n2, i0, j0, m, O, opt.mode, same && !diag, k.components[c].data());
              if (has_bias)
                scatter(bbuf.data(), n1, n2, i0, j0, m, O, opt.mode, same && !diag, k.components[c + 1].data());
            }
            c += params.size();
          }
        }
        if (l > first) {
          // large Grams are not kept through the backward step, so that peak memory holds the Grams
          // or the delta buffers, not both; small ones are, to save page faults in the next layer
          if (workspace.bytes() > kKeepWorkspaceBytes) workspace.release();
          const Layer<T>* below = l > 0 ? &model.layer(l - 1) : nullptr;
          // deltas that are still shared are the same O rows on both sides (both start as the identity
          // and pass the same input-independent layers): side b copies a's instead of forming them again
          // (the tutorial CNN's head, flatten and conv3 backward: 1.16–1.19 ms against 1.82–1.95)
          const bool both_shared =
              !diag && (a.identity || a.shared) && (b.identity || b.shared) && layer.input_independent_backward();
          step_back(layer, below, a, O, k.flops);
          if (both_shared) {
            b.delta.resize(a.delta.size());
            std::copy(a.delta.data(), a.delta.data() + a.delta.size(), b.delta.data());
            b.identity = false;
            b.shared = true;
            b.values[l + 1].release();
          } else if (!diag) {
            step_back(layer, below, b, O, k.flops);
          }
        }
        if (opt.progress) opt.progress(++done, steps);
      }
      if (!whole) scatter(acc.data(), n1, n2, i0, j0, m, O, opt.mode, same && !diag, k.total.data());
      expanded_a.release();
      expanded_b.release();
    }
  }
  if (same) {  // layers formed the pairs (i, j ≤ i) of each symmetric block
    mirror_samples(k.total.data(), n, O, opt.mode);
    for (auto& c : k.components) mirror_samples(c.data(), n, O, opt.mode);
  }
  return k;
}

}  // namespace
}  // namespace detail

template <class T>
Kernel<T> ntk(const Sequential<T>& model, const Tensor<T>& x1, const Tensor<T>& x2, const KernelOptions& options) {
  return detail::explicit_ntk<T>(model, x1, &x2, options);
}

template <class T>
Kernel<T> ntk(const Sequential<T>& model, const Tensor<T>& x, const KernelOptions& options) {
  return detail::explicit_ntk<T>(model, x, nullptr, options);
}

template Kernel<float> ntk(const Sequential<float>&, const Tensor<float>&, const Tensor<float>&, const KernelOptions&);
template Kernel<double> ntk(const Sequential<double>&, const Tensor<double>&, const Tensor<double>&,
                            const KernelOptions&);
template Kernel<float> ntk(const Sequential<float>&, const Tensor<float>&, const KernelOptions&);
template Kernel<double> ntk(const Sequential<double>&, const Tensor<double>&, const KernelOptions&);

}  // namespace xntk
