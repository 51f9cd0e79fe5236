#pragma once
// The plan of an explicit kernel computation: the result's layout, the tile size chosen from the memory
// budget, and the grid of tile pairs (only I ≤ J when X2 is omitted), the unit of memory planning, of
// streaming to a sink and, later, of resuming and of distribution.

#include <cstdint>
#include <string>
#include <vector>

#include "xntk/model.hpp"
#include "xntk/sink.hpp"

namespace xntk::engine {

/// One tile pair: samples [i0, i0 + n1) of X1 against [j0, j0 + n2) of X2; `diagonal`: a block of Θ(X, X)
/// with I = J.
struct TilePair {
  int64_t i0 = 0, n1 = 0, j0 = 0, n2 = 0;
  bool diagonal = false;
};

struct Plan {
  KernelLayout layout;
  int64_t tile = 0;
  std::vector<TilePair> pairs;
  /// One tile pair covers everything: the blocks can be written straight into the result.
  bool whole = false;
  /// The conv layers' evaluation orders for the tile size, in component order.
  std::vector<MethodUsed> methods;
  /// Progress steps: tile pairs × layers with parameters.
  int64_t steps = 0;
};

/// Bytes of memory available to this process: the system's MemAvailable (or all physical memory), and no more
/// than its memory cgroups (v2 or v1, its own and each above it) leave below their limits; read at most every
/// 50 ms (in tensor.cpp, whose allocations check it too).
double available_bytes();

/// What the memory cgroups leave below their limits, reclaimable page cache counted as available: `root`
/// the cgroup file system (/sys/fs/cgroup; v1's memory controller under root/memory), `self_cgroup` the text of
/// /proc/self/cgroup. +infinity when no group sets a limit.
double cgroup_available_bytes(const std::string& root, const std::string& self_cgroup);

/// The layout of Θ(X1, X2) for n × m samples (same: X2 omitted).
template <class T>
KernelLayout layout_of(const Sequential<T>& model, int64_t n, int64_t m, bool same, const KernelOptions& options);

/// Working bytes of one tile pair of n1 × n2 samples in `mode` (with its components or not).
template <class T>
double tile_bytes(const Sequential<T>& model, int64_t n1, int64_t n2, Mode mode, bool components);

/// The plan for a layout whose sink holds `resident` bytes: the fewest tiles whose working memory (tile_bytes)
/// fits the budget (KernelOptions::memory_budget, default half of what is available besides the sink's), each
/// as even as possible, unless KernelOptions::tile sets it. xntk::Error if not even one sample fits.
template <class T>
Plan make_plan(const Sequential<T>& model, const KernelLayout& layout, const KernelOptions& options, double resident);

}  // namespace xntk::engine
