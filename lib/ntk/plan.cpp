#include "ntk/plan.hpp"

#include <algorithm>

#include "batch.hpp"
#include "nn/model.hpp"

namespace xntk::engine {

/// Each side's forward values and two delta buffers of the widest layer, the blocks (total, and a component's
/// weight and bias), and the largest of the layers' own scratch.
template <class T>
double tile_bytes(const Sequential<T>& model, int64_t n1, int64_t n2, Mode mode, bool components) {
  const int64_t O = model.outputs();
  double values = 0, widest = 0, layer_extra = 0;
  nn::root(model).for_each([&](const nn::Layer<T>& layer) {
    if (layer.type() == "sequential") return;  // its output is its last child's
    values += static_cast<double>(layer.out_size());
    widest = std::max({widest, static_cast<double>(layer.out_size()), static_cast<double>(layer.in_size())});
    if (const auto* leaf = layer.leaf()) layer_extra = std::max(layer_extra, leaf->component_bytes(n1, n2, O, mode));
  });
  const double side = static_cast<double>(sizeof(T)) * (values + 2.0 * static_cast<double>(O) * widest);
  const double blocks = static_cast<double>(sizeof(T)) * static_cast<double>(n1 * n2 * detail::per_pair(O, mode)) *
                        (components ? 3.0 : 1.0);
  return side * static_cast<double>(n1 + n2) + blocks + layer_extra;
}

template <class T>
KernelLayout layout_of(const Sequential<T>& model, int64_t n, int64_t m, bool same, const KernelOptions& options) {
  KernelLayout l;
  l.n = n;
  l.m = m;
  l.outputs = model.outputs();
  l.mode = options.mode;
  l.symmetric = same;
  l.shape = detail::kernel_shape(n, m, l.outputs, options.mode);
  if (options.components) l.components = model.component_names();
  return l;
}

template <class T>
Plan make_plan(const Sequential<T>& model, const KernelLayout& layout, const KernelOptions& opt, double resident) {
  if (opt.tile < 0) throw Error("kernel: tile must be 0 (automatic) or positive, got " + std::to_string(opt.tile));
  if (opt.memory_budget < 0) throw Error("kernel: memory_budget must be 0 (automatic) or positive");
  Plan p;
  p.layout = layout;
  const int64_t n = layout.n, m = layout.m, O = layout.outputs;
  const bool components = !layout.components.empty();
  const double budget =
      opt.memory_budget > 0 ? static_cast<double>(opt.memory_budget) : 0.5 * (available_bytes() - resident);
  auto fits = [&](int64_t t) {
    return tile_bytes(model, std::min(t, n), std::min(t, m), layout.mode, components) <= budget;
  };
  int64_t tile = opt.tile > 0 ? opt.tile : std::max(n, m);
  if (opt.tile == 0 && !fits(tile)) {
    if (!fits(1))
      throw Error("kernel: even one sample per tile needs more than the memory budget of " +
                  std::to_string(budget / 1e6) + " MB");
    // the largest tile that fits (the working memory grows with the tile), by bisection; then the same number of
    // tiles made as even as possible, so that the last one is not a sliver (50,000 samples under a budget that
    // fits 3,900: 13 tiles of 3,847, where halving from 50,000 gave 32 of 1,563)
    int64_t lo = 1, hi = tile;  // fits(lo), !fits(hi)
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (fits(mid) ? lo : hi) = mid;
    }
    const int64_t longest = std::max(n, m), tiles = (longest + lo - 1) / lo;
    tile = (longest + tiles - 1) / tiles;
  }
  p.tile = tile;
  p.whole = tile >= n && tile >= m;
  const auto& owners = model.impl().owners;
  for (auto it = owners.rbegin(); it != owners.rend(); ++it)
    (*it)->notes(std::min(tile, n), std::min(tile, m), O, p.methods);
  for (int64_t i0 = 0; i0 < n; i0 += tile)
    for (int64_t j0 = layout.symmetric ? i0 : 0; j0 < m; j0 += tile)
      p.pairs.push_back({i0, std::min(tile, n - i0), j0, std::min(tile, m - j0), layout.symmetric && i0 == j0});
  p.steps = static_cast<int64_t>(p.pairs.size() * owners.size());
  return p;
}

#define XNTK_INSTANTIATE(T)                                                                            \
  template KernelLayout layout_of(const Sequential<T>&, int64_t, int64_t, bool, const KernelOptions&); \
  template Plan make_plan(const Sequential<T>&, const KernelLayout&, const KernelOptions&, double);    \
  template double tile_bytes(const Sequential<T>&, int64_t, int64_t, Mode, bool);
XNTK_INSTANTIATE(float)
XNTK_INSTANTIATE(double)
#undef XNTK_INSTANTIATE

}  // namespace xntk::engine
