#pragma once
// parallel_for for loops whose total work may be tiny (small images, few samples): below a threshold the
// loop runs on the calling thread. Forking and joining the OpenMP team costs microseconds on an idle
// machine and up to milliseconds on a busy one, where the idle threads spin at the barrier waiting for a
// descheduled one; many tiny regions then cost far more than their work.

#include <cstdint>
#include <utility>

#include "cpu/backend.hpp"

namespace xntk::detail {

/// Operations (roughly, multiply-adds) below which a loop is not worth a parallel region.
inline constexpr double kParallelWork = 1 << 17;

/// parallel_for(n, f) when n · work_per_item reaches kParallelWork, a plain loop otherwise.
template <class F>
void parallel_for_work(int64_t n, double work_per_item, F&& f) {
  if (static_cast<double>(n) * work_per_item < kParallelWork) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  parallel_for(n, std::forward<F>(f));
}

/// f(i) for the rows i in [0, n) of a matrix whose row i has `triangle ? i + 1 : cols` cells of
/// `work_per_cell` each. A lower triangle is dealt out in row pairs (i, n − 1 − i), so that every thread
/// gets the same number of cells rather than the last rows' thread getting three quarters of them.
template <class F>
void parallel_rows(int64_t n, int64_t cols, bool triangle, double work_per_cell, F&& f) {
  if (!triangle) {
    parallel_for_work(n, work_per_cell * static_cast<double>(cols), std::forward<F>(f));
    return;
  }
  parallel_for_work((n + 1) / 2, work_per_cell * static_cast<double>(n + 1), [&](int64_t i) {
    f(i);
    if (n - 1 - i != i) f(n - 1 - i);
  });
}

}  // namespace xntk::detail
