#pragma once
// The library's parallel loops (OpenMP), used by the backends and the kernel driver only: layers never
// parallelise themselves. These templates are compiled for the baseline instruction set wherever they are
// instantiated; the CPU backend's per-instruction-set code passes them its loop bodies as lambdas, which
// are compiled for its own instruction set (lib/backend/cpu/isa_begin.hpp).
//
// Loops whose total work may be tiny (small images, few samples) run on the calling thread below a
// threshold: forking and joining the OpenMP team costs microseconds on an idle machine and up to
// milliseconds on a busy one, where the idle threads spin at the barrier waiting for a descheduled one.

#include <cstdint>
#include <exception>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xntk::backend {

/// Threads a parallel loop started here would use (1 inside a parallel region).
inline int loop_threads() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

/// Whether a loop of n items runs on the calling thread alone: one item, one thread, or already inside a
/// parallel region.
/// Such a loop opens no region at all, not even an inactive one (`if` false): a parallel loop nested in an
/// inactive region gets a fresh OpenMP team, threads started and joined each time (a training step whose
/// one slice ran that way was 1.3–1.8× slower).
inline bool serial_loop(int64_t n) {
#ifdef _OPENMP
  return n <= 1 || omp_in_parallel() || omp_get_max_threads() == 1;
#else
  (void)n;
  return true;
#endif
}

/// Runs f(i) for i in [0, n) on the OpenMP threads (static schedule: the bodies are uniform), unless already
/// inside a parallel region. The first exception thrown by f is rethrown here (none may escape a region).
template <class F>
void parallel_for(int64_t n, F&& f) {
  if (serial_loop(n)) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i) {
    try {
      f(i);
    } catch (...) {
#ifdef _OPENMP
#pragma omp critical(xntk_parallel_for_error)
#endif
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

/// parallel_for for bodies that cannot throw (kernels): no exception handling around each call.
template <class F>
void parallel_blocks(int64_t n, F&& f) {
  if (serial_loop(n)) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
  for (int64_t i = 0; i < n; ++i) f(i);
}

/// As parallel_blocks with OpenMP's dynamic schedule in chunks of `chunk` (bodies of uneven cost).
template <class F>
void parallel_dynamic(int64_t n, int chunk, F&& f) {
  if (serial_loop(n)) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, chunk)
#endif
  for (int64_t i = 0; i < n; ++i) f(i);
  (void)chunk;
}

/// f(t, threads) once on each of `threads` threads (at most loop_threads()); bodies cannot throw.
template <class F>
void parallel_team(int threads, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    f(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  f(0, 1);
}

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

/// Sets the OpenMP thread count for a scope (0: leave as is).
class ThreadScope {
 public:
  explicit ThreadScope(int threads) {
#ifdef _OPENMP
    previous_ = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
  }
  ~ThreadScope() {
#ifdef _OPENMP
    omp_set_num_threads(previous_);
#endif
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace xntk::backend
