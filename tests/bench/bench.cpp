// Reference workloads of docs/benchmarks.md: one JSON line each with the median seconds after a
// warm-up, the FLOPs of the algorithm run, GFLOP/s, the fraction of the GEMM peak measured in the same
// run with the same BLAS, and the workload's peak resident memory against its budget. Every workload
// runs in a child process of its own so that its peak memory is its own.
//
//   xntk_bench [--threads T] [--repeats R] [--dtype float32|float64] [WORKLOAD ...]
//   xntk_bench --list

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

#include "backend/cpu/blas.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace xntk;

namespace {

struct Workload {
  std::string name;
  ModelSpec spec;
  int64_t n, m;  // m = 0: X2 omitted
  Mode mode;
  int repeats;  // median of this many timed runs after one warm-up (fewer for the slow ones)
};

std::vector<LayerSpec> mlp(std::vector<int64_t> widths, Activation act) {
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < widths.size(); ++i) {
    layers.push_back(Linear{.out_features = widths[i]});
    if (i + 1 < widths.size()) layers.push_back(act);
  }
  return layers;
}

ModelSpec tutorial_cnn() {
  // the functorch NTK tutorial's CNN: conv1.relu, conv2.relu, conv3, flatten, fc
  return {.input = {3, 32, 32},
          .layers = {Conv2d{.out_channels = 32, .kernel_size = 3}, ReLU(), Conv2d{.out_channels = 32, .kernel_size = 3},
                     ReLU(), Conv2d{.out_channels = 32, .kernel_size = 3}, Flatten{}, Linear{.out_features = 10}}};
}

ModelSpec small_cnn() {
  // a CIFAR-sized CNN for conv scaling in trace mode
  return {.input = {3, 32, 32},
          .layers = {Conv2d{.out_channels = 16, .kernel_size = 3, .stride = 2, .padding = 1}, ReLU(),
                     Conv2d{.out_channels = 32, .kernel_size = 3, .stride = 2, .padding = 1}, ReLU(),
                     AvgPool2d{.kernel_size = 2}, Flatten{}, Linear{.out_features = 10}}};
}

std::vector<Workload> workloads() {
  return {
      {"tutorial_cnn_20x5", tutorial_cnn(), 20, 5, Mode::full, 5},
      {"tutorial_cnn_100", tutorial_cnn(), 100, 0, Mode::full, 3},
      // 21 for the millisecond workloads: the three calls after workload 3's warm-up take 13–20 ms against
      // 6.5–8 ms for the rest (~470 page faults each, until glibc reuses the pages of the 4 MB results),
      // so a median of 5 was one of them
      {"torchntk_mlp_1000", {.input = {784}, .layers = mlp({100, 100, 1}, Tanh())}, 1000, 0, Mode::full, 21},
      {"nt_fcn2048_16", {.input = {3072}, .layers = mlp({2048, 2048, 2048, 8}, ReLU())}, 16, 0, Mode::full, 21},
      {"mlp3072_4096_trace", {.input = {3072}, .layers = mlp({1024, 1024, 10}, ReLU())}, 4096, 0, Mode::trace, 3},
      {"cnn_trace_2048", small_cnn(), 2048, 0, Mode::trace, 3},
  };
}

/// Best of five 2048³ products: the GEMM peak of this machine with the BLAS xntk uses.
template <class T>
double gemm_peak() {
  const int64_t n = 2048;
  std::vector<T> a(n * n, T(0.5)), b(n * n, T(0.25)), c(n * n);
  double best = 1e30;
  for (int r = 0; r < 6; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    backend::cpu::gemm(false, false, n, n, n, T(1), a.data(), n, b.data(), n, T(0), c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, s);
  }
  return 2.0 * static_cast<double>(n * n * n) / best / 1e9;
}

template <class T>
Tensor<T> randn(Shape shape, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  Tensor<T> t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t[i] = static_cast<T>(d(g));
  return t;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

template <class T>
int run_one(const Workload& w, int threads, int repeats, const char* dtype) {
  const Sequential<T> net(w.spec, 0);
  Shape s1{w.n}, s2{w.m};
  s1.insert(s1.end(), w.spec.input.begin(), w.spec.input.end());
  s2.insert(s2.end(), w.spec.input.begin(), w.spec.input.end());
  const Tensor<T> x1 = randn<T>(s1, 1);
  const Tensor<T> x2 = w.m > 0 ? randn<T>(s2, 2) : Tensor<T>();
  const KernelOptions opt{.mode = w.mode, .threads = threads};
  auto once = [&] { return w.m > 0 ? ntk(net, x1, x2, opt) : ntk(net, x1, opt); };
  Kernel<T> k = once();  // warm-up
  std::vector<double> times;
  for (int r = 0; r < (repeats > 0 ? repeats : w.repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    k = once();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double sec = times[times.size() / 2];
  const double peak = gemm_peak<T>();
  const double gflops = k.flops / sec / 1e9;
  const double in_mb = static_cast<double>((x1.size() + x2.size()) * sizeof(T)) / 1e6 * (1e6 / 1048576.0);
  const double out_mb = static_cast<double>(k.total.size() * sizeof(T)) / 1048576.0;
  std::string methods;
  for (const auto& m : k.methods)
    methods += std::string(methods.empty() ? "" : ", ") + "\"" + m.layer + ": " + name(m.method) + "\"";
  std::printf(
      "{\"workload\": \"%s\", \"mode\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"n\": %lld, \"m\": %lld, "
      "\"seconds\": %.6g, \"seconds_min\": %.6g, \"flops\": %.6g, \"gflops\": %.4g, \"gemm_peak_gflops\": %.4g, "
      "\"peak_fraction\": %.3f, \"blas\": \"%s\", \"blas_core\": \"%s\", \"tile\": %lld, \"peak_rss_mb\": %.1f, "
      "\"memory_limit_mb\": %.1f, "
      "\"conv_methods\": [%s]}\n",
      w.name.c_str(), name(w.mode), dtype, threads, static_cast<long long>(w.n),
      static_cast<long long>(w.m > 0 ? w.m : w.n), sec, times.front(), k.flops, gflops, peak, gflops / peak,
      backend::cpu::blas_name(), backend::cpu::blas_core(), static_cast<long long>(k.tile), peak_rss_mb(),
      1.5 * (in_mb + out_mb) + 512.0, methods.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // the OPENBLAS_CORETYPE xntk would set here (tests/bench/blas_env.py gives it to every side it compares)
  if (argc == 2 && std::string(argv[1]) == "--blas-coretype") {
    std::printf("%s\n", xntk::blas_info().better_coretype.c_str());
    return 0;
  }
  xntk::backend::cpu::reexec_for_blas(argv);  // OpenBLAS's SSE3 fallback (backend/cpu/blas.hpp)
  int threads = 0, repeats = 0;
  std::string dtype = "float32", child;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "xntk_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads")
      threads = std::stoi(value());
    else if (a == "--repeats")
      repeats = std::stoi(value());
    else if (a == "--dtype")
      dtype = value();
    else if (a == "--child")
      child = value();
    else if (a == "--list") {
      for (const auto& w : workloads()) std::printf("%s\n", w.name.c_str());
      return 0;
    } else
      names.push_back(a);
  }
  if (dtype != "float32" && dtype != "float64") {
    std::fprintf(stderr, "xntk_bench: --dtype must be float32 or float64, got %s\n", dtype.c_str());
    return 2;
  }
#ifdef _OPENMP
  if (threads <= 0) threads = omp_get_max_threads();
#endif
  const auto all = workloads();
  if (!child.empty()) {
    for (const auto& w : all)
      if (w.name == child) {
        try {
          return dtype == "float32" ? run_one<float>(w, threads, repeats, "float32")
                                    : run_one<double>(w, threads, repeats, "float64");
        } catch (const std::exception& e) {
          std::printf("{\"workload\": \"%s\", \"error\": \"%s\"}\n", w.name.c_str(), e.what());
          return 1;
        }
      }
    std::fprintf(stderr, "xntk_bench: unknown workload %s (see --list)\n", child.c_str());
    return 2;
  }
  if (names.empty())
    for (const auto& w : all) names.push_back(w.name);
  int failures = 0;
  for (const auto& n : names) {
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
      const std::string t = std::to_string(threads), r = std::to_string(repeats);
      execl("/proc/self/exe", argv[0], "--child", n.c_str(), "--threads", t.c_str(), "--repeats", r.c_str(), "--dtype",
            dtype.c_str(), static_cast<char*>(nullptr));
      std::perror("xntk_bench: exec");
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  return failures ? 1 : 0;
}
