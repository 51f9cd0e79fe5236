// The lazy-training study (docs/dynamics.md): the notebook's 1-D MLP with two hidden ReLU layers of width w and
// biases, trained by full-batch SGD (lr 1e-3, 1000 steps, mse) on x = (−3, 0.5), y = (2, −1), beside its
// linearisation at θ₀ from the same initial weights, for several widths in both parameterisations. Each run
// writes one JSON line per step (the StepLog schema of docs/dynamics.md) to OUT/<param>_w<width>_<net|lin>.jsonl;
// examples/lazy_training/plot.py draws the figures from them.
//
// As a check that can fail, the linearised network's losses must equal the kernel's k-step prediction
// (xntk::predict_steps on Θ₀(X, X)) at every step; the program exits 1 when they differ by more than 1e-9 relative
// (to the loss, or to 1e-9 of the first loss once the loss has fallen below that, where only rounding is left).
//
// Usage: lazy_training [--out DIR] [--widths 10,100,1000,10000] [--steps 1000] [--lr 1e-3] [--ntk-every 100]
//                      [--seed 0] [--threads 0] [--param both|standard|ntk] [--run both|net|lin] [--log-every 1]
//
// --param and --run pick the parameterisations and the runs (the network, its linearisation); --log-every K logs
// every K-th step only (the loss and the weight change cost a forward pass and two reads of θ each: at width 10000,
// whose middle layer has 10⁸ weights, about as much as the step), and the check then compares the logged steps.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

namespace {

using namespace xntk;

std::vector<int64_t> integers(const std::string& s) {
  std::vector<int64_t> r;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) r.push_back(std::stoll(item));
  return r;
}

int usage() {
  std::fprintf(stderr,
               "usage: lazy_training [--out DIR] [--widths 10,100,1000,10000] [--steps 1000] [--lr 1e-3] "
               "[--ntk-every 100] [--seed 0] [--threads 0] [--param both|standard|ntk] [--run both|net|lin] "
               "[--log-every 1]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path out = "lazy_training_out";
  std::vector<int64_t> widths = {10, 100, 1000, 10000};
  int64_t steps = 1000, ntk_every = 100, log_every = 1;
  double lr = 1e-3;
  uint64_t seed = 0;
  int threads = 0;
  std::vector<Parameterization> params = {Parameterization::standard, Parameterization::ntk};
  std::vector<bool> runs = {false, true};  // linearised?
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    if (a == "--out")
      out = v;
    else if (a == "--widths")
      widths = integers(v);
    else if (a == "--steps")
      steps = std::stoll(v);
    else if (a == "--lr")
      lr = std::stod(v);
    else if (a == "--ntk-every")
      ntk_every = std::stoll(v);
    else if (a == "--seed")
      seed = std::stoull(v);
    else if (a == "--threads")
      threads = std::stoi(v);
    else if (a == "--log-every" && std::stoll(v) > 0)
      log_every = std::stoll(v);
    else if (a == "--run" && (v == "both" || v == "net" || v == "lin"))
      runs = v == "both" ? runs : std::vector<bool>{v == "lin"};
    else if (a == "--param" && (v == "both" || v == "standard" || v == "ntk"))
      params = v == "both"       ? params
               : v == "standard" ? std::vector<Parameterization>{Parameterization::standard}
                                 : std::vector<Parameterization>{Parameterization::ntk};
    else
      return usage();
  }
  std::filesystem::create_directories(out);

  const Tensor<double> x({2, 1}, std::vector<double>{-3, 0.5}), y({2, 1}, std::vector<double>{2, -1});
  // the probe: 33 points on [−4, 4] (both training points lie on the grid's span, not on its nodes)
  Tensor<double> probe({33, 1});
  for (int64_t i = 0; i < 33; ++i) probe[i] = -4 + 0.25 * static_cast<double>(i);

  std::printf("%-9s %6s %4s %12s %12s %12s %12s %8s\n", "param", "width", "run", "loss(0)", "loss(T)", "weight chg",
              "kernel chg", "seconds");
  double worst = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const Parameterization p : params) {
    for (const int64_t w : widths) {
      const ModelSpec spec{
          .input = {1},
          .parameterization = p,
          .layers = {Linear{.out_features = w}, ReLU(), Linear{.out_features = w}, ReLU(), Linear{.out_features = 1}}};
      for (const bool linear : runs) {
        Sequential<double> net(spec, seed);  // the same θ₀ for the network and its linearisation
        TrainOptions opt{.loss = Loss::mse,
                         .optimizer = {.kind = Optimizer::Kind::sgd, .lr = lr},
                         .steps = steps,
                         .linearized = linear,
                         .log_every = log_every,
                         .ntk_every = ntk_every,
                         .threads = threads};
        const std::string name = std::string(xntk::name(p)) + "_w" + std::to_string(w) + (linear ? "_lin" : "_net");
        std::ofstream log(out / (name + ".jsonl"));
        std::vector<int64_t> logged;  // the steps logged and their losses
        std::vector<double> losses;
        const auto t0 = std::chrono::steady_clock::now();
        const Tensor<double> k0 =
            linear ? ntk(net, x, {.mode = Mode::full, .threads = threads}).total : Tensor<double>();
        const Tensor<double> f0 = net.forward(x);
        const StepLog last = train<double>(net, {.x = x, .y = y, .probe = probe}, opt, [&](const StepLog& l) {
          log << log_line(l) << '\n' << std::flush;
          logged.push_back(l.step);
          losses.push_back(l.train_loss);
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (linear) {
          // the linearised network under full-batch GD moves exactly as the kernel's k-step formula says
          const auto pred = predict_steps<double>({.k_train = k0, .y = y, .f0_train = f0}, Loss::mse, lr, logged);
          for (size_t k = 0; k < logged.size(); ++k) {
            const double d0 = pred.train[2 * k] - y[0], d1 = pred.train[2 * k + 1] - y[1];
            const double want = (d0 * d0 + d1 * d1) / 2, got = losses[k];
            // relative, but not below 1e-9 of the first loss: a loss that fell to ~1e-32 is rounding noise
            worst = std::max(worst, std::abs(got - want) / std::max(want, 1e-9 * losses.front()));
          }
        }
        std::printf("%-9s %6lld %4s %12.5e %12.5e %12.5e %12.5e %8.2f\n", xntk::name(p), static_cast<long long>(w),
                    linear ? "lin" : "net", losses.front(), last.train_loss, last.weight_change,
                    last.probe ? last.probe->kernel_change : 0.0, seconds);
        std::fflush(stdout);
      }
    }
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("logs in %s; %.1f s in all\n", out.string().c_str(), total);
  std::printf("linearised losses vs the kernel's k-step prediction: largest relative difference %.3e\n", worst);
  return worst <= 1e-9 ? 0 : 1;
}
