// Training benchmarks (docs/benchmarks.md, "Training"), driven side by side with PyTorch by
// tests/bench/train_vs_torch.py; prints one JSON line per run. Built with the tests, never run by CTest.
//
//   train_bench sgd_step mlp|cnn [--reps R] [--threads T]   one SGD step (forward + backward + update), float32:
//                                                          MLP 784-1000-1000-10 on 256 samples, or the functorch
//                                                          tutorial CNN on 32; median over R steps after 2 warm-ups
//   train_bench notebook [--threads T]                     MLP 30-500-1 (ReLU), 20000 samples, batch 256, 10
//                                                          epochs, shuffled; after every epoch the NTK of 500 probe
//                                                          points and its spectrum; end to end, float32
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

#include "backend/cpu/blas.hpp"

namespace {

using namespace xntk;
using Clock = std::chrono::steady_clock;

Tensor<float> normal(Shape s, uint64_t seed) {
  Tensor<float> t(std::move(s));
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d;
  for (int64_t i = 0; i < t.size(); ++i) t[i] = d(g);
  return t;
}

double seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

int sgd_step(const std::string& model, int reps, int threads) {
  const bool cnn = model == "cnn";
  const ModelSpec spec =
      cnn ? ModelSpec{.input = {3, 32, 32},
                      .layers = {Conv2d{.out_channels = 32, .kernel_size = 3}, ReLU(),
                                 Conv2d{.out_channels = 32, .kernel_size = 3}, ReLU(),
                                 Conv2d{.out_channels = 32, .kernel_size = 3}, Flatten{}, Linear{.out_features = 10}}}
          : ModelSpec{.input = {784},
                      .layers = {Linear{.out_features = 1000}, ReLU(), Linear{.out_features = 1000}, ReLU(),
                                 Linear{.out_features = 10}}};
  const int64_t n = cnn ? 32 : 256;
  Sequential<float> net(spec, 0);
  const Tensor<float> x = normal(cnn ? Shape{n, 3, 32, 32} : Shape{n, 784}, 1);
  Tensor<float> y({n});
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(i % 10);
  Trainer<float> trainer(net, {.loss = Loss::cross_entropy,
                               .optimizer = {.kind = Optimizer::Kind::sgd, .lr = 1e-3},
                               .stop_on_nonfinite = false,
                               .threads = threads});
  std::vector<double> t;
  for (int r = 0; r < reps + 2; ++r) {
    const auto a = Clock::now();
    trainer.step(x, y);
    if (r >= 2) t.push_back(seconds(a));
  }
  std::sort(t.begin(), t.end());
  std::printf("{\"bench\": \"sgd_step\", \"model\": \"%s\", \"batch\": %lld, \"median_s\": %.6g, \"min_s\": %.6g}\n",
              model.c_str(), static_cast<long long>(n), t[t.size() / 2], t.front());
  return 0;
}

int notebook(int threads) {
  const ModelSpec spec{.input = {30}, .layers = {Linear{.out_features = 500}, ReLU(), Linear{.out_features = 1}}};
  const int64_t n = 20000, probes = 500;
  Sequential<float> net(spec, 0);
  const Tensor<float> x = normal({n, 30}, 1), probe = normal({probes, 30}, 3);
  Tensor<float> y({n, 1});
  for (int64_t i = 0; i < n; ++i) y[i] = x[i * 30] > 0 ? 1.0f : -1.0f;
  TrainOptions opt{.loss = Loss::mse,
                   .optimizer = {.kind = Optimizer::Kind::sgd, .lr = 1e-2},
                   .epochs = 10,
                   .batch_size = 256,
                   .shuffle = true,
                   .shuffle_seed = 0,
                   .threads = threads};
  const int64_t per_epoch = (n + 255) / 256;
  opt.log_every = per_epoch;
  opt.ntk_every = per_epoch;
  int logs = 0;
  double lambda_max = 0;
  const auto a = Clock::now();
  train<float>(net, {.x = x, .y = y, .probe = probe}, opt, [&](const StepLog& l) {
    ++logs;
    if (l.probe) lambda_max = l.probe->lambda_max;
  });
  const double s = seconds(a);
  std::printf("{\"bench\": \"notebook\", \"seconds\": %.6g, \"logs\": %d, \"lambda_max\": %.6g}\n", s, logs,
              lambda_max);
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
  std::vector<std::string> a(argv + 1, argv + argc);
  int reps = 20, threads = 0;
  std::vector<std::string> pos;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--reps" && i + 1 < a.size())
      reps = std::stoi(a[++i]);
    else if (a[i] == "--threads" && i + 1 < a.size())
      threads = std::stoi(a[++i]);
    else
      pos.push_back(a[i]);
  }
  if (pos.size() == 2 && pos[0] == "sgd_step" && (pos[1] == "mlp" || pos[1] == "cnn"))
    return sgd_step(pos[1], reps, threads);
  if (pos.size() == 1 && pos[0] == "notebook") return notebook(threads);
  std::fprintf(stderr, "usage: train_bench sgd_step mlp|cnn [--reps R] [--threads T] | notebook [--threads T]\n");
  return 2;
}
