// Entry point of the `xntk` program: argument parsing (CLI11), signal handling, and the mapping of every
// failure to one line on stderr and an exit code (0 ok, 1 runtime error, 2 usage error).

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <new>

#include "backend/cpu/blas.hpp"
#include "cli/commands.hpp"
#include "io/file.hpp"
#include "quote.hpp"
#include "xntk/error.hpp"

namespace {

/// Scripts parse stderr line by line: one failure, one line, and a short one whatever was given.
std::string one_line(std::string s) {
  constexpr size_t kMax = 1000;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

/// An integer option from 0 to `max`. CLI11 itself wraps "-1" and saturates 2^64 into a uint64_t, and prints
/// NonNegativeNumber's range up to DBL_MAX in full: say the range plainly.
CLI::Validator integer_up_to(uint64_t max) {
  return CLI::Validator(
      [max](std::string& value) -> std::string {
        const std::string expected = "expected an integer from 0 to " + std::to_string(max) + ", got ";
        if (value.empty() || value.size() > 20 || !std::all_of(value.begin(), value.end(), [](char c) {
              return std::isdigit(static_cast<unsigned char>(c));
            }))
          return expected + xntk::detail::quote(value);
        errno = 0;
        const unsigned long long v = std::strtoull(value.c_str(), nullptr, 10);
        if (errno == ERANGE || v > max) return expected + xntk::detail::quote(value);
        return "";
      },
      "0.." + std::to_string(max));
}

/// A finite real number above `min` (or at least `min`, when `inclusive`).
CLI::Validator finite_number(double min, bool inclusive) {
  char bound[32];
  std::snprintf(bound, sizeof bound, "%s %g", inclusive ? ">=" : ">", min);
  const std::string range = bound;
  return CLI::Validator(
      [min, inclusive, range](std::string& value) -> std::string {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(value.c_str(), &end);
        const bool ok = !value.empty() && end == value.c_str() + value.size() && errno != ERANGE && std::isfinite(v) &&
                        (inclusive ? v >= min : v > min);
        return ok ? "" : "expected a finite number " + range + ", got " + xntk::detail::quote(value);
      },
      "NUMBER " + range);
}

/// CLI11 takes "" as a value: an empty file name is a usage error, not "no such file" or "not given".
const CLI::Validator kFileName(
    [](std::string& value) -> std::string { return value.empty() ? "expected a file name, got an empty string" : ""; },
    "FILE");

// At most as many threads as any machine has cores, and tens of times this one's: more only exhausts memory.
constexpr uint64_t kMaxThreads = 1024;
// The budget is converted to bytes in an int64.
// Steps, epochs and logging intervals: far beyond any training run, and safe to multiply by a batch size.
constexpr uint64_t kMaxSteps = std::numeric_limits<int32_t>::max();
constexpr uint64_t kMaxMemoryMB = std::numeric_limits<int64_t>::max() / 1000000;

}  // namespace

int main(int argc, char** argv) {
  // OpenBLAS's SSE3 fallback on CPU models it does not know: start again with the kernels this CPU runs
  xntk::backend::cpu::reexec_for_blas(argv);
  // a crash, a signal or std::terminate removes the temporary outputs; an inherited SIG_IGN is kept
  xntk::detail::install_cleanup_handlers();

  CLI::App app{"xntk: empirical neural tangent kernels from closed-form layer-wise formulas (docs/cli.md)", "xntk"};
  app.set_version_flag("--version", XNTK_VERSION);
  app.require_subcommand(1);

  xntk::cli::ComputeArgs c;
  CLI::App* compute = app.add_subcommand("compute", "Compute the NTK of a model on X1 (and X2) and write it as .npy");
  compute->add_option("model", c.model, "Model JSON file")->required()->check(kFileName);
  compute->add_option("--x1", c.x1, "Inputs X1 (.npy, float32/float64, shape (N, input...))")
      ->required()
      ->check(kFileName);
  compute->add_option("--x2", c.x2, "Inputs X2 (.npy, shape (M, input...)); default X1 (symmetric kernel)")
      ->check(kFileName);
  compute->add_option("--weights", c.weights, "Weights (safetensors, state_dict names such as \"3.weight\")")
      ->check(kFileName);
  compute->add_option("--seed", c.seed, "Seed of the initialisation when no --weights are given")
      ->check(integer_up_to(std::numeric_limits<uint64_t>::max()))
      ->capture_default_str();
  compute->add_option("--mode", c.mode, "full (N,M,O,O), trace (N,M) or diagonal (N,M,O)")
      ->check(CLI::IsMember({"full", "trace", "diagonal"}))
      ->capture_default_str();
  compute->add_option("--method", c.method, "explicit (layer-wise closed forms) or autograd (Jacobians)")
      ->check(CLI::IsMember({"explicit", "autograd"}))
      ->capture_default_str();
  compute->add_option("--dtype", c.dtype, "Arithmetic and output type")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str();
  compute->add_option("--components", c.components, "Also write every component and \"total\" (safetensors)")
      ->check(kFileName);
  compute->add_option("-o,--output", c.output, "Output kernel (.npy)")->required()->check(kFileName);
  compute->add_flag("--stats", c.stats, "Print one JSON line of timings, FLOPs and memory to stdout");
  compute->add_flag("--dry-run", c.dry_run,
                    "Print the plan as one JSON line (tiles, steps, output bytes, memory, FLOPs and time estimated "
                    "from a short calibration on the first samples) and exit, writing nothing");
  compute->add_flag("--progress", c.progress,
                    "Progress lines on stderr (steps done, elapsed, time left, GFLOP/s) at most every 5 s and at the "
                    "end, also when stderr is not a terminal (batch and SLURM logs)");
  compute->add_option("--rows", c.rows,
                      "Compute only rows a:b of the kernel (samples a to b-1 of X1, 0-based, as a Python slice; "
                      "a or b may be left out): a block for schedulers that split the work themselves");
  compute->add_option("--cols", c.cols,
                      "Compute only columns c:d (samples c to d-1 of X2, or of X1 when --x2 is not given)");
  compute->add_flag("--resume", c.resume,
                    "Keep a journal of finished tiles beside the output (OUTPUT.xntk-partial, OUTPUT.xntk-journal) "
                    "so that an interrupted run can continue; continue the run they record if they exist");
  compute->add_option("--threads", c.threads, "Threads (0: the OpenMP default)")
      ->check(integer_up_to(kMaxThreads))
      ->capture_default_str();
  compute->add_option("--tile", c.tile, "Samples per tile (0: from the memory budget)")
      ->check(integer_up_to(std::numeric_limits<int64_t>::max()))
      ->capture_default_str();
  compute
      ->add_option("--memory-budget", c.memory_mb,
                   "Working memory for the tiles in MB, besides the outputs (0: half the available memory, within the "
                   "cgroup limit); --method autograd: for its Jacobians and result (0: 90% of it)")
      ->check(integer_up_to(kMaxMemoryMB))
      ->capture_default_str();

  xntk::cli::AnalyzeArgs a;
  CLI::App* analyze = app.add_subcommand("analyze", "Spectrum, condition number and effective rank of Θ(X, X)");
  analyze->add_option("kernel", a.kernel, "Kernel (.npy): (N,N,O,O), (N,N) or (N,N,O)")->required()->check(kFileName);
  analyze->add_option("--components", a.components, "Components (safetensors) from xntk compute --components")
      ->check(kFileName);
  analyze->add_flag("--json", a.json, "Print one JSON object instead of text");
  analyze->add_flag("--eigenvalues", a.eigenvalues, "Also list the eigenvalues in the text output");
  analyze->add_flag("--extremes", a.extremes,
                    "Only lambda_max, lambda_min and the condition number, by Lanczos iterations on the memory-mapped "
                    "kernel (for kernels too large for the dense eigensolver)");
  analyze->add_flag("--resolve-min", a.resolve_min,
                    "With --extremes: iterate past the proof that the kernel is singular to working precision until "
                    "lambda_min converges to the file's precision");
  analyze->add_option("--top", a.top, "Only the k largest eigenvalues, by Lanczos iterations likewise")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  analyze->add_option("--vectors", a.vectors, "With --top: write their eigenvectors (.npy, (k, size))")
      ->check(kFileName);

  xntk::cli::TrainArgs t;
  CLI::App* train =
      app.add_subcommand("train", "Train a model (or its linearisation) as PyTorch would; write its weights");
  train->add_option("model", t.model, "Model JSON file")->required()->check(kFileName);
  train->add_option("--x", t.x, "Training inputs (.npy, shape (N, input...))")->required()->check(kFileName);
  train->add_option("--y", t.y, "Targets (.npy): (N, O), or integer labels (N) for cross_entropy")
      ->required()
      ->check(kFileName);
  train->add_option("--weights", t.weights, "Initial weights (safetensors); default: initialised from --seed")
      ->check(kFileName);
  train->add_option("--seed", t.seed, "Seed of the initialisation when no --weights are given")
      ->check(integer_up_to(std::numeric_limits<uint64_t>::max()))
      ->capture_default_str();
  train->add_option("--lr", t.lr, "Learning rate")->required()->check(finite_number(0, false));
  train->add_option("--momentum", t.momentum, "SGD momentum (PyTorch's buffer rule)")
      ->check(finite_number(0, true))
      ->capture_default_str();
  train->add_option("--weight-decay", t.weight_decay, "Weight decay (added to the gradient, as PyTorch)")
      ->check(finite_number(0, true))
      ->capture_default_str();
  train->add_option("--optimizer", t.optimizer, "sgd or adam")
      ->check(CLI::IsMember({"sgd", "adam"}))
      ->capture_default_str();
  auto* steps = train->add_option("--steps", t.steps, "Optimiser steps")->check(integer_up_to(kMaxSteps));
  train->add_option("--epochs", t.epochs, "Passes over the data")->check(integer_up_to(kMaxSteps))->excludes(steps);
  train->add_option("--batch-size", t.batch_size, "Samples per step (0: the full batch)")
      ->check(integer_up_to(std::numeric_limits<int32_t>::max()))
      ->capture_default_str();
  auto* shuffle =
      train->add_option("--shuffle-seed", t.shuffle_seed, "Reshuffle the samples every epoch from this seed")
          ->check(integer_up_to(std::numeric_limits<uint64_t>::max()));
  train->add_option("--loss", t.loss, "mse or cross_entropy")
      ->check(CLI::IsMember({"mse", "cross_entropy"}))
      ->capture_default_str();
  train->add_option("--alpha", t.alpha, "Output scale α: trains α·f with the loss divided by α²")
      ->check(finite_number(0, false))
      ->capture_default_str();
  train->add_flag("--center", t.center, "Train α·(f − f₀), f₀ the frozen initial network");
  train->add_flag("--linearized", t.linearized, "Train the linearisation at the initial weights");
  auto* x_test = train->add_option("--x-test", t.x_test, "Test inputs (.npy)")->check(kFileName);
  auto* y_test = train->add_option("--y-test", t.y_test, "Test targets (.npy)")->check(kFileName);
  x_test->needs(y_test);
  y_test->needs(x_test);
  auto* probe = train->add_option("--probe", t.probe, "Probe inputs (.npy) for the NTK metrics")->check(kFileName);
  train->add_option("--log", t.log, "JSON lines, one per logged step (docs/dynamics.md)")->check(kFileName);
  train->add_option("--log-every", t.log_every, "Log every K steps (0: first and last only)")
      ->check(integer_up_to(kMaxSteps))
      ->capture_default_str();
  train->add_option("--ntk-every", t.ntk_every, "NTK metrics on the probe every K steps (0: never)")
      ->check(integer_up_to(kMaxSteps))
      ->capture_default_str()
      ->needs(probe);
  train->add_option("--dtype", t.dtype, "Arithmetic type")
      ->check(CLI::IsMember({"float32", "float64"}))
      ->capture_default_str();
  train->add_option("--threads", t.threads, "Threads (0: the OpenMP default)")
      ->check(integer_up_to(kMaxThreads))
      ->capture_default_str();
  train->add_option("-o,--output", t.output, "Trained weights (safetensors, state_dict names)")
      ->required()
      ->check(kFileName);

  xntk::cli::PredictArgs p;
  CLI::App* predict =
      app.add_subcommand("predict", "Predictions of gradient-descent training from the NTK (steps, time, or inf)");
  predict->add_option("--k-train", p.k_train, "Θ(X, X) (.npy): (N,N,O,O), (N,N) or (N,N,O)")
      ->required()
      ->check(kFileName);
  predict->add_option("--y", p.y, "Targets (.npy): (N, O), or integer labels (N) for cross_entropy")
      ->required()
      ->check(kFileName);
  auto* k_test = predict->add_option("--k-test", p.k_test, "Θ(X_test, X) (.npy)")->check(kFileName);
  predict->add_option("--f0-train", p.f0_train, "Initial training outputs (N, O) (.npy; default 0)")->check(kFileName);
  predict->add_option("--f0-test", p.f0_test, "Initial test outputs (M, O) (.npy; default 0)")
      ->check(kFileName)
      ->needs(k_test);
  predict->add_option("--loss", p.loss, "mse or cross_entropy")
      ->check(CLI::IsMember({"mse", "cross_entropy"}))
      ->capture_default_str();
  predict->add_option("--lr", p.lr, "Learning rate")->check(finite_number(0, false));
  auto* psteps =
      predict->add_option("--steps", p.steps, "Step counts k1,k2,…")->delimiter(',')->check(integer_up_to(kMaxSteps));
  auto* ptime = predict->add_option("--time", p.times, "Times t1,t2,… of gradient flow (mse), or inf")
                    ->delimiter(',')
                    ->excludes(psteps);
  predict->add_option("--ridge", p.ridge, "Ridge of the t = inf solution")
      ->check(finite_number(0, true))
      ->capture_default_str();
  predict->add_option("-o,--output", p.output, "Training predictions (T, N, O) (.npy)")->required()->check(kFileName);
  auto* test_output =
      predict->add_option("--test-output", p.test_output, "Test predictions (T, M, O) (.npy)")->check(kFileName);
  test_output->needs(k_test);
  k_test->needs(test_output);

  // CLI11 would only say that a subcommand is required; name the word it did not know
  const std::vector<std::string> commands = {"compute", "analyze", "train", "predict"};
  if (argc > 1 && argv[1][0] != '-' && std::find(commands.begin(), commands.end(), argv[1]) == commands.end()) {
    std::cerr << "xntk: unknown command " << xntk::detail::quote(argv[1])
              << "; expected compute, analyze, train or predict (see xntk --help)\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "xntk: " << one_line(e.what()) << " (see xntk --help)\n";
    return 2;
  }

  try {
    if (compute->parsed()) {
      // compared as files, not strings: "o/K.npy" and "./o/K.npy" are one file, and the kernel would be lost
      if (!c.components.empty() && xntk::detail::same_output_file(c.components, c.output) &&
          !xntk::detail::is_null_device(c.output))
        throw CLI::ValidationError("-o and --components name the same file (\"" + c.output + "\" and \"" +
                                   c.components + "\")");
      xntk::cli::compute(c);
    } else if (train->parsed()) {
      t.shuffle = shuffle->count() > 0;
      if (t.steps == 0 && t.epochs == 0) throw CLI::ValidationError("train: give --steps T or --epochs E (at least 1)");
      if (!t.log.empty() && xntk::detail::same_output_file(t.output, t.log) && !xntk::detail::is_null_device(t.output))
        throw CLI::ValidationError("-o and --log name the same file (\"" + t.output + "\")");
      xntk::cli::train(t);
    } else if (predict->parsed()) {
      if (p.steps.empty() && p.times.empty())
        throw CLI::ValidationError("predict: give --steps k1,k2,… or --time t1,t2,… (or --time inf)");
      if (!p.steps.empty() && p.lr == 0) throw CLI::ValidationError("predict: --steps needs --lr");
      if (!p.test_output.empty() && xntk::detail::same_output_file(p.output, p.test_output) &&
          !xntk::detail::is_null_device(p.output))
        throw CLI::ValidationError("-o and --test-output name the same file (\"" + p.output + "\")");
      (void)ptime;
      xntk::cli::predict(p);
    } else {
      if (!a.vectors.empty() && a.top == 0) throw CLI::ValidationError("--vectors needs --top k");
      if (a.resolve_min && !a.extremes) throw CLI::ValidationError("--resolve-min needs --extremes");
      if (a.extremes || a.top > 0)
        xntk::cli::analyze_large(a);
      else
        xntk::cli::analyze(a);
    }
  } catch (const CLI::ValidationError& e) {
    std::cerr << "xntk: " << one_line(e.what()) << "\n";
    return 2;
  } catch (const xntk::Error& e) {
    std::cerr << "xntk: " << one_line(e.what()) << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "xntk: out of memory; use trace or diagonal mode, fewer samples, or --tile\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "xntk: " << one_line(e.what()) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "xntk: internal error (unknown exception)\n";
    return 1;
  }
  return 0;
}
