// Training benchmarks (docs/benchmarks.md, "Training"), driven side by side with PyTorch by
// tests/bench/train_vs_torch.py; prints one JSON line per run. Built with the tests, never run by CTest.
//
//   train_bench sgd_step mlp|cnn [--reps R] [--threads T]   one SGD step (forward + backward + update), float32:
//                                                          MLP 784-1000-1000-10 on 256 samples, or the functorch
//                                                          tutorial CNN on 32; median over R steps after 2 warm-ups
//   train_bench notebook [--threads T] [--parts P]         MLP 30-500-1 (ReLU), 20000 samples, batch 256, 10
//                                                          epochs, shuffled; after every epoch the NTK of 500 probe
//                                                          points and its spectrum; end to end, float32. For the
//                                                          time's breakdown, --parts losses drops the probe (the
//                                                          loss on all samples still logged every epoch) and
//                                                          --parts steps the per-epoch log too (the run's first
//                                                          and last log remain); default all
//   train_bench wide [--width W] [--reps R] [--threads T] [--linearized]
//                                                          one full-batch SGD step of the lazy-training study's
//                                                          widest network (examples/lazy_training): 1-W-W-1 (ReLU,
//                                                          bias), NTK parameterisation, W = 10000 (100 M
//                                                          parameters), float64, mse on its 2 points, lr 1e-3, as
//                                                          train() runs it (stop on non-finite values); or its
//                                                          linearisation; median over R steps after 1 warm-up
//   train_bench conv_ops [--reps R] [--threads T]          the CPU backend's convolution primitives at the tutorial
//                                                          CNN's conv2 and conv3 (32 -> 32 channels, 3 x 3, on
//                                                          30 x 30 and 28 x 28, batch 32, float32): forward, input
//                                                          gradient, weight gradient; median over R calls
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

#include "backend/backend.hpp"
#include "backend/cpu/blas.hpp"
#include "backend/cpu/cpu.hpp"
#include "backend/parallel.hpp"

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

int wide(int64_t width, int reps, int threads, bool linearized) {
  const ModelSpec spec{.input = {1},
                       .parameterization = Parameterization::ntk,
                       .layers = {Linear{.out_features = width}, ReLU(), Linear{.out_features = width}, ReLU(),
                                  Linear{.out_features = 1}}};
  Sequential<double> net(spec, 0);
  const Tensor<double> x({2, 1}, {-3.0, 0.5}), y({2, 1}, {2.0, -1.0});
  Trainer<double> trainer(net, {.loss = Loss::mse,
                                .optimizer = {.kind = Optimizer::Kind::sgd, .lr = 1e-3},
                                .linearized = linearized,
                                .threads = threads});
  std::vector<double> t;
  double loss = 0;
  for (int r = 0; r < reps + 1; ++r) {
    const auto a = Clock::now();
    loss = trainer.step(x, y);
    if (r >= 1) t.push_back(seconds(a));
  }
  std::sort(t.begin(), t.end());
  std::printf(
      "{\"bench\": \"wide\", \"width\": %lld, \"linearized\": %s, \"median_s\": %.6g, \"min_s\": %.6g, "
      "\"loss\": %.17g}\n",
      static_cast<long long>(width), linearized ? "true" : "false", t[t.size() / 2], t.front(), loss);
  return 0;
}

int notebook(int threads, const std::string& parts) {
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
  TrainData<float> data{.x = x, .y = y};
  if (parts == "all") data.probe = probe;
  if (parts != "all") opt.ntk_every = 0;
  if (parts == "steps") opt.log_every = 0;
  int logs = 0;
  double lambda_max = 0;
  const auto a = Clock::now();
  train<float>(net, data, opt, [&](const StepLog& l) {
    ++logs;
    if (l.probe) lambda_max = l.probe->lambda_max;
  });
  const double s = seconds(a);
  std::printf("{\"bench\": \"notebook\", \"seconds\": %.6g, \"logs\": %d, \"lambda_max\": %.6g}\n", s, logs,
              lambda_max);
  return 0;
}

int conv_ops(int reps, int threads) {
  const backend::ThreadScope scope(threads);
  // the kernels side by side, one call of each in turn per repetition: automatic paths, the direct kernels
  // vectorised along rows (channel_conv off), vectorised over channels (channel_conv on), im2col and GEMMs
  namespace cpu = backend::cpu;
  using cpu::Choice;
  const std::vector<std::pair<const char*, cpu::Paths>> kernels = {
      {"automatic", {}},
      {"rows", {.channel_conv = Choice::off}},
      {"channels", {.channel_conv = Choice::on}},
      {"gemm", {.direct_conv = Choice::off, .channel_conv = Choice::off}}};
  std::vector<std::unique_ptr<cpu::CpuBackend>> be;
  for (const auto& k : kernels) be.push_back(cpu::make(k.second));
  struct Layer {
    const char* name;
    int64_t channels, side;
  };
  for (const Layer& l : {Layer{"conv1", 3, 32}, Layer{"conv2", 32, 30}, Layer{"conv3", 32, 28}}) {
    const backend::ConvGeometry g{
        .channels = l.channels, .height = l.side, .width = l.side, .kernel_h = 3, .kernel_w = 3};
    const int64_t n = 32, C = 32, P = g.out_h() * g.out_w();
    const Tensor<float> w = normal({C, l.channels, 3, 3}, 1), x = normal({n, l.channels, l.side, l.side}, 2),
                        d = normal({n, C, P}, 3);
    Tensor<float> y({n, C, P}), din({n, l.channels, l.side, l.side}), dw({C, l.channels, 3, 3});
    const char* names[] = {"forward", "input_gradient", "weight_gradient"};
    for (int op = 0; op < 3; ++op) {
      if (op == 1 && l.channels < 8) continue;  // conv1's input gradient is never needed
      std::vector<std::vector<double>> t(be.size());
      for (int r = 0; r < reps + 2; ++r)
        for (size_t k = 0; k < be.size(); ++k) {
          const auto& ops = be[k]->ops<float>();
          const auto a = Clock::now();
          if (op == 0)
            ops.conv_forward(g, C, 1.0f, w.data(), x.data(), n, y.data());
          else if (op == 1)
            ops.conv_backward(g, C, 1.0f, w.data(), d.data(), n, din.data());
          else
            ops.conv_weight_gradient(g, C, x.data(), n, d.data(), 1.0f, dw.data());
          if (r >= 2) t[k].push_back(seconds(a));
        }
      const double flops = 2.0 * static_cast<double>(n * C * g.rows() * P);
      for (size_t k = 0; k < be.size(); ++k) {
        std::sort(t[k].begin(), t[k].end());
        const double median = t[k][t[k].size() / 2];
        std::printf(
            "{\"bench\": \"conv_ops\", \"layer\": \"%s\", \"op\": \"%s\", \"kernel\": \"%s\", \"median_s\": %.6g, "
            "\"min_s\": %.6g, \"gflops\": %.4g}\n",
            l.name, names[op], kernels[k].first, median, t[k].front(), flops / median / 1e9);
      }
    }
  }
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
  int64_t width = 10000;
  bool linearized = false;
  std::string parts = "all";
  std::vector<std::string> pos;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--reps" && i + 1 < a.size())
      reps = std::stoi(a[++i]);
    else if (a[i] == "--threads" && i + 1 < a.size())
      threads = std::stoi(a[++i]);
    else if (a[i] == "--width" && i + 1 < a.size())
      width = std::stoll(a[++i]);
    else if (a[i] == "--linearized")
      linearized = true;
    else if (a[i] == "--parts" && i + 1 < a.size())
      parts = a[++i];
    else
      pos.push_back(a[i]);
  }
  if (pos.size() == 2 && pos[0] == "sgd_step" && (pos[1] == "mlp" || pos[1] == "cnn"))
    return sgd_step(pos[1], reps, threads);
  if (pos.size() == 1 && pos[0] == "notebook" && (parts == "all" || parts == "losses" || parts == "steps"))
    return notebook(threads, parts);
  if (pos.size() == 1 && pos[0] == "conv_ops") return conv_ops(reps, threads);
  if (pos.size() == 1 && pos[0] == "wide" && width > 0 && reps > 0) return wide(width, reps, threads, linearized);
  std::fprintf(stderr,
               "usage: train_bench sgd_step mlp|cnn [--reps R] [--threads T] | notebook [--threads T] "
               "[--parts all|losses|steps] | conv_ops [--reps R] [--threads T] | wide [--width W] [--reps R] "
               "[--threads T] [--linearized]\n");
  return 2;
}
