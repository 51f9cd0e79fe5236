// The explicit driver: tiles of samples; for each tile pair a forward pass of both sides, then one backward
// sweep of the O output-derivative streams through the layer tree, in which every layer with parameters adds
// its closed-form components (ComponentsVisitor).

#include "ntk/driver.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "backend/parallel.hpp"
#include "batch.hpp"
#include "cpu/cache.hpp"
#include "nn/model.hpp"

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
using backend::parallel_rows;
using detail::per_pair;

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

/// Scratch the layers may keep from one leaf to the next: larger Grams are freed before the next leaf's
/// backward step, so that peak memory holds the Grams or the delta buffers, not both; smaller ones are kept,
/// to save page faults in the next layer.
constexpr double kKeepScratchBytes = 32.0 * 1024 * 1024;

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
  nn::root(model).for_each([&](const nn::Layer<T>& layer) {
    const auto* leaf = layer.leaf();
    if (!leaf) return;  // a sequential block's output is its last child's
    values += static_cast<double>(layer.out_size());
    widest = std::max({widest, static_cast<double>(layer.out_size()), static_cast<double>(layer.in_size())});
    layer_extra = std::max(layer_extra, leaf->component_bytes(n1, n2, O));
  });
  const double side = static_cast<double>(sizeof(T)) * (values + 2.0 * static_cast<double>(O) * widest);
  const double blocks =
      static_cast<double>(sizeof(T)) * static_cast<double>(n1 * n2 * per_pair(O, mode)) * (components ? 3.0 : 1.0);
  return side * static_cast<double>(n1 + n2) + blocks + layer_extra;
}

/// At each leaf with parameters: its components of the tile pair, into the total's block and, on request,
/// into each component's.
template <class T>
class ComponentsVisitor final : public nn::Visitor<T> {
 public:
  ComponentsVisitor(Kernel<T>& k, const KernelOptions& opt, int64_t outputs, int64_t steps)
      : k_(k), opt_(opt), outputs_(outputs), steps_(steps) {}

  /// The tile pair about to be swept: its block (n1, n2, per) goes to `total` (the result itself when one tile
  /// covers everything: `whole`), at (i0, j0) of the result.
  void start(T* total, int64_t i0, int64_t n1, int64_t j0, int64_t n2, bool diag, bool whole, int64_t cols) {
    total_ = total;
    i0_ = i0;
    j0_ = j0;
    n1_ = n1;
    n2_ = n2;
    diag_ = diag;
    whole_ = whole;
    cols_ = cols;
  }

  void leaf(nn::Sweep<T>& s, const nn::Leaf<T>& layer, const nn::Pointers<T>& in) override {
    const nn::Side<T> a{in[0], &s.lanes[0].delta, s.lanes[0].batch};
    const nn::Side<T> b = s.count == 2 ? nn::Side<T>{in[1], &s.lanes[1].delta, s.lanes[1].batch} : a;
    nn::ComponentTarget<T> t{opt_.mode, outputs_, diag_, total_, total_};
    const size_t c = static_cast<size_t>(layer.component_slot());
    const bool has_bias = layer.parameters().size() > 1;
    const int64_t per = per_pair(outputs_, opt_.mode);
    const size_t block = static_cast<size_t>(n1_ * n2_ * per);
    if (opt_.components) {
      // each component into its own block, then added to the total
      if (whole_) {
        t.weight = k_.components[c].data();
        t.bias = has_bias ? k_.components[c + 1].data() : nullptr;
      } else {
        wbuf_.assign(block, T(0));
        bbuf_.assign(has_bias ? block : 0, T(0));
        t.weight = wbuf_.data();
        t.bias = has_bias ? bbuf_.data() : nullptr;
      }
    }
    layer.components(s.cx, a, b, t);
    if (opt_.components) {
      const T* cw = t.weight;
      const T* cb = t.bias;
      T* total = total_;
      parallel_for_work(n1_, static_cast<double>(n2_ * per), [&](int64_t i) {
        for (size_t e = static_cast<size_t>(i * n2_ * per); e < static_cast<size_t>((i + 1) * n2_ * per); ++e)
          total[e] += cb ? cw[e] + cb[e] : cw[e];
      });
      if (!whole_) {
        const bool mirror = opt_.components && same_ && !diag_;
        scatter(wbuf_.data(), n1_, n2_, i0_, j0_, cols_, outputs_, opt_.mode, mirror, k_.components[c].data());
        if (has_bias)
          scatter(bbuf_.data(), n1_, n2_, i0_, j0_, cols_, outputs_, opt_.mode, mirror, k_.components[c + 1].data());
      }
    }
    if (opt_.progress) opt_.progress(++done_, steps_);
    if (s.cx.scratch_bytes() > kKeepScratchBytes) s.cx.release_scratch();
  }

  bool same_ = false;  // X2 omitted

 private:
  Kernel<T>& k_;
  const KernelOptions& opt_;
  int64_t outputs_, steps_, done_ = 0;
  T* total_ = nullptr;
  int64_t i0_ = 0, j0_ = 0, n1_ = 0, n2_ = 0, cols_ = 0;
  bool diag_ = false, whole_ = false;
  std::vector<T> wbuf_, bbuf_;
};

}  // namespace

template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, const Tensor<T>& x1, const Tensor<T>* x2,
                          const KernelOptions& opt, const backend::Backend& backend) {
  detail::ThreadScope threads(opt.threads);
  const bool same = x2 == nullptr;
  const int64_t n = detail::check_batch(model, x1, "x1");
  const int64_t m = same ? n : detail::check_batch(model, *x2, "x2");
  const int64_t O = model.outputs(), per = per_pair(O, opt.mode), in = numel(model.input_shape());
  if (opt.tile < 0) throw Error("kernel: tile must be 0 (automatic) or positive, got " + std::to_string(opt.tile));
  if (opt.memory_budget < 0) throw Error("kernel: memory_budget must be 0 (automatic) or positive");
  const auto& impl = model.impl();

  Kernel<T> k;
  k.names = model.component_names();
  const Shape shape = detail::kernel_shape(n, m, O, opt.mode);
  const double out_bytes = static_cast<double>(sizeof(T)) * static_cast<double>(numel(shape)) *
                           static_cast<double>(1 + (opt.components ? k.names.size() : 0));
  const double avail = available_bytes();
  if (out_bytes > 0.9 * avail)
    throw Error("kernel: the result needs " + std::to_string(out_bytes / 1e9) + " GB but only " +
                std::to_string(avail / 1e9) + " GB of memory is available; use trace or diagonal mode, fewer " +
                "samples, or no components");
  k.total = Tensor<T>(shape, detail::zeroed_vector<T>(numel(shape)));
  if (opt.components)
    for (size_t c = 0; c < k.names.size(); ++c)
      k.components.emplace_back(shape, detail::zeroed_vector<T>(numel(shape)));
  if (impl.owners.empty()) return k;

  const double budget = opt.memory_budget > 0 ? static_cast<double>(opt.memory_budget) : 0.5 * (avail - out_bytes);
  int64_t tile = opt.tile > 0 ? opt.tile : std::max(n, m);
  if (opt.tile == 0)
    while (tile > 1 && tile_bytes(model, std::min(tile, n), std::min(tile, m), opt.mode, opt.components) > budget)
      tile = (tile + 1) / 2;
  if (tile_bytes(model, std::min(tile, n), std::min(tile, m), opt.mode, opt.components) > budget && opt.tile == 0)
    throw Error("kernel: even one sample per tile needs more than the memory budget of " +
                std::to_string(budget / 1e6) + " MB");
  k.tile = tile;
  std::vector<nn::MethodNote> notes;
  for (auto it = impl.owners.rbegin(); it != impl.owners.rend(); ++it)
    (*it)->notes(std::min(tile, n), std::min(tile, m), O, notes);
  for (const auto& note : notes) k.methods.push_back(note.layer + ": " + note.method);

  const int64_t tiles_n = (n + tile - 1) / tile, tiles_m = (m + tile - 1) / tile;
  const int64_t steps =
      (same ? tiles_n * (tiles_n + 1) / 2 : tiles_n * tiles_m) * static_cast<int64_t>(impl.owners.size());
  const T* data2 = same ? x1.data() : x2->data();
  // One tile pair covering everything writes straight into the results; otherwise blocks are
  // accumulated in buffers and scattered (mirrored too when X2 is omitted).
  const bool whole = tile >= n && tile >= m;
  nn::Context<T> cx(backend);
  ComponentsVisitor<T> visitor(k, opt, O, steps);
  visitor.same_ = same;
  std::vector<T> acc;
  for (int64_t i0 = 0; i0 < n; i0 += tile) {
    for (int64_t j0 = same ? i0 : 0; j0 < m; j0 += tile) {
      const int64_t n1 = std::min(tile, n - i0), n2 = std::min(tile, m - j0);
      const bool diag = same && i0 == j0;
      nn::Values<T> va(cx, impl.nodes), vb(cx, diag ? 0 : impl.nodes);
      const T* xa = x1.data() + i0 * in;
      const T* xb = diag ? xa : data2 + j0 * in;
      impl.root->forward(cx, va, xa, n1);
      if (!diag) impl.root->forward(cx, vb, xb, n2);
      const size_t block = static_cast<size_t>(n1 * n2 * per);
      if (!whole) acc.assign(block, T(0));
      T* total = whole ? k.total.data() : acc.data();
      visitor.start(total, i0, n1, j0, n2, diag, whole, m);
      nn::Sweep<T> sweep(cx, diag ? 1 : 2, O, visitor);
      sweep.lanes[0].values = &va;
      sweep.lanes[0].batch = n1;
      sweep.lanes[1].values = &vb;
      sweep.lanes[1].batch = n2;
      impl.root->sweep(sweep, {xa, xb}, {nullptr, nullptr}, false);
      if (!whole) scatter(acc.data(), n1, n2, i0, j0, m, O, opt.mode, same && !diag, k.total.data());
    }
  }
  if (same) {  // layers formed the pairs (i, j ≤ i) of each symmetric block
    mirror_samples(k.total.data(), n, O, opt.mode);
    for (auto& c : k.components) mirror_samples(c.data(), n, O, opt.mode);
  }
  k.flops = cx.flops();
  return k;
}

template Kernel<float> explicit_kernel(const Sequential<float>&, const Tensor<float>&, const Tensor<float>*,
                                       const KernelOptions&, const backend::Backend&);
template Kernel<double> explicit_kernel(const Sequential<double>&, const Tensor<double>&, const Tensor<double>*,
                                        const KernelOptions&, const backend::Backend&);

}  // namespace engine

template <class T>
Kernel<T> ntk(const Sequential<T>& model, const Tensor<T>& x1, const Tensor<T>& x2, const KernelOptions& options) {
  return engine::explicit_kernel<T>(model, x1, &x2, options, backend::get(options.backend));
}

template <class T>
Kernel<T> ntk(const Sequential<T>& model, const Tensor<T>& x, const KernelOptions& options) {
  return engine::explicit_kernel<T>(model, x, nullptr, options, backend::get(options.backend));
}

template Kernel<float> ntk(const Sequential<float>&, const Tensor<float>&, const Tensor<float>&, const KernelOptions&);
template Kernel<double> ntk(const Sequential<double>&, const Tensor<double>&, const Tensor<double>&,
                            const KernelOptions&);
template Kernel<float> ntk(const Sequential<float>&, const Tensor<float>&, const KernelOptions&);
template Kernel<double> ntk(const Sequential<double>&, const Tensor<double>&, const KernelOptions&);

}  // namespace xntk
