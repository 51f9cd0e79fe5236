// `xntk compute`: load the model, weights and data, check them, compute the kernel, and write the results
// under temporary names that are renamed only once every output is complete.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "checked.hpp"
#include "cli/commands.hpp"
#include "cli/inputs.hpp"
#include "io/checksum.hpp"
#include "io/file.hpp"
#include "ntk/plan.hpp"
#include "xntk/io.hpp"
#include "xntk/kernel.hpp"
#include "xntk/sink.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xntk::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// A one-line progress bar on stderr, shown only when stderr is a terminal and the computation has already
/// taken two seconds (short runs stay silent; pipes and logs never see control characters).
class ProgressBar {
 public:
  ProgressBar() : tty_(isatty(2) == 1), start_(Clock::now()) {}
  ~ProgressBar() {
    if (shown_) std::fputs("\r\033[K", stderr);
  }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t done, int64_t total) {
    if (!tty_ || total <= 0) return;
    const double elapsed = seconds_since(start_);
    if (elapsed < 2.0 || (shown_ && elapsed - last_ < 0.1 && done < total)) return;
    shown_ = true;
    last_ = elapsed;
    const double f = static_cast<double>(done) / static_cast<double>(total);
    constexpr int width = 30;
    const int filled = static_cast<int>(f * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.append(static_cast<size_t>(width - filled), '-');
    const double left = f > 0 ? elapsed * (1 - f) / f : 0;
    std::fprintf(stderr, "\r[%s] %3.0f%%  %.0f s elapsed, ~%.0f s left\033[K", bar.c_str(), 100 * f, elapsed, left);
    std::fflush(stderr);
  }

 private:
  bool tty_, shown_ = false;
  Clock::time_point start_;
  double last_ = 0;
};

/// `--progress`: plain lines on stderr for logs, the first after 5 s, then at most every 5 s, and the last
/// when the computation ends (so a short run prints one).
class ProgressLog {
 public:
  explicit ProgressLog(double every = 5.0) : every_(every), start_(Clock::now()) {}

  void update(int64_t done, int64_t total, double flops) {
    if (total <= 0) return;
    const double elapsed = seconds_since(start_);
    if (done < total && elapsed - last_ < every_) return;
    last_ = elapsed;
    const double f = static_cast<double>(done) / static_cast<double>(total);
    const double left = f > 0 ? elapsed * (1 - f) / f : 0;
    std::string rate;
    if (flops > 0 && elapsed > 0) {
      char buf[48];
      std::snprintf(buf, sizeof buf, ", %.1f GFLOP/s", flops / elapsed / 1e9);
      rate = buf;
    }
    std::fprintf(stderr, "xntk compute: %lld of %lld steps (%.0f%%), %.1f s elapsed, ~%.1f s left%s\n",
                 static_cast<long long>(done), static_cast<long long>(total), 100 * f, elapsed, left, rate.c_str());
    std::fflush(stderr);
  }

 private:
  double every_;
  Clock::time_point start_;
  double last_ = 0;
};

/// 16 hexadecimal digits, different for every run.
std::string new_run_id() {
  std::random_device device;
  const uint64_t id = (uint64_t{device()} << 32 | device()) ^ static_cast<uint64_t>(getpid());
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

Mode parse_mode(const std::string& m) {
  return m == "trace" ? Mode::trace : m == "diagonal" ? Mode::diagonal : Mode::full;
}

template <class T>
void write_kept(detail::AtomicFile& out, std::optional<detail::AtomicFile>& comp_out, Kernel<T>& k,
                const ComputeArgs& args, const std::string& run_id) {
  write_npy(out.stream(), k.total);
  if (comp_out) {
    // which kernel these components belong to: outputs are renamed one after the other, so two runs writing
    // the same files may leave the kernel of one with the components of the other; analyze checks this
    const std::string checksum = detail::kernel_checksum(k.total, sizeof(T));
    std::vector<NamedTensor<T>> named;
    named.reserve(k.names.size() + 1);
    for (size_t i = 0; i < k.names.size(); ++i) named.push_back({k.names[i], std::move(k.components[i])});
    named.push_back({"total", std::move(k.total)});
    write_safetensors(comp_out->stream(), named,
                      {{"mode", args.mode}, {"dtype", args.dtype}, {"run_id", run_id}, {"kernel_checksum", checksum}});
  }
  // Finish every output before renaming any, so that a full disk leaves no file half-updated.
  out.close();
  if (comp_out) comp_out->close();
  out.commit();
  if (comp_out) comp_out->commit();
}

/// X's first `count` samples.
template <class T>
TensorRef<T> first_samples(const Tensor<T>& x, int64_t count) {
  Shape shape = x.shape();
  shape[0] = count;
  return TensorRef<T>(x.data(), shape);
}

/// `--dry-run`: the explicit method's plan as one JSON line, and the FLOPs and time it will take estimated from
/// two small calibration blocks Θ(X₁[:c], X₁[:c]) with X2 given (c and c/2 samples, c ≤ 256: the general,
/// unmirrored path) fitted as a·(sample pairs) + b·(samples through the network) — the pairwise Gram
/// products and each tile's forward and backward passes — and summed over the plan's tile pairs (a diagonal
/// one computes its lower triangle and one pass). Touches no output.
template <class T>
void dry_run(const ComputeArgs& args, const Sequential<T>& model, const Tensor<T>& x1,
             const std::optional<Tensor<T>>& x2, const KernelOptions& opt) {
  if (args.method == "autograd") throw Error("--dry-run: plans the explicit method only; expected --method explicit");
  const int64_t n = x1.dim(0), m = x2 ? x2->dim(0) : n;
  const KernelLayout layout = engine::layout_of(model, n, m, !x2, opt);
  const engine::Plan plan = engine::make_plan(model, layout, opt, 0.0);
  double pairs = 0, passes = 0;
  for (const engine::TilePair& p : plan.pairs) {
    const double n1 = static_cast<double>(p.n1), n2 = static_cast<double>(p.n2);
    pairs += p.diagonal ? n1 * (n1 + 1) / 2 : n1 * n2;
    passes += p.diagonal ? n1 : n1 + n2;
  }
  const int64_t c = std::min<int64_t>({n, plan.tile, 256}), c2 = std::max<int64_t>(1, c / 2);
  KernelOptions quiet = opt;
  quiet.components = false;
  quiet.tile = 0;
  quiet.progress = nullptr;
  quiet.progress_flops = nullptr;
  const auto t0 = Clock::now();
  const Kernel<T> k1 = ntk(model, first_samples(x1, c), first_samples(x1, c), quiet);
  const double t1 = seconds_since(t0);
  const Kernel<T> k2 = ntk(model, first_samples(x1, c2), first_samples(x1, c2), quiet);
  // f(c) = a·c² + b·2c
  const double dc = static_cast<double>(c), dc2 = static_cast<double>(c2);
  double a = k1.flops / (dc * dc), b = 0;  // one sample: all of it counted per pair
  if (c > c2) {
    a = std::max(0.0, (k1.flops / dc - k2.flops / dc2) / (dc - dc2));
    b = std::max(0.0, (k1.flops / dc - a * dc) / 2);
  }
  const double flops = a * pairs + b * passes, rate = t1 > 0 ? k1.flops / t1 : 0;
  const double per = static_cast<double>(layout.per_pair()), values = static_cast<double>(n) * static_cast<double>(m);
  const double budget =
      opt.memory_budget > 0 ? static_cast<double>(opt.memory_budget) : 0.5 * engine::available_bytes();
  nlohmann::ordered_json j;
  j["dry_run"] = true;
  j["method"] = args.method;
  j["mode"] = args.mode;
  j["dtype"] = args.dtype;
  j["n"] = n;
  j["m"] = m;
  j["outputs"] = model.outputs();
  j["parameters"] = model.num_parameters();
  j["tile"] = plan.tile;
  j["tile_pairs"] = plan.pairs.size();
  j["steps"] = plan.steps;
  j["output_bytes"] = values * per * sizeof(T);
  j["components_bytes"] = args.components.empty()
                              ? 0.0
                              : values * per * sizeof(T) * static_cast<double>(model.component_names().size() + 1);
  j["memory_budget_bytes"] = budget;
  j["memory_available_bytes"] = engine::available_bytes();
  j["flops_estimate"] = flops;
  j["calibration"] = {{"samples", c}, {"seconds", t1}, {"gflops", rate / 1e9}};
  j["estimated_s"] = rate > 0 ? flops / rate : 0.0;
  std::cout << j.dump() << std::endl;
}

template <class T>
void run(const ComputeArgs& args) {
  const Mode mode = parse_mode(args.mode);
  // Create the outputs first: an unwritable destination fails now, not after a long computation. The explicit
  // path streams its blocks into the files as they are computed (the kernel never has to fit in memory);
  // the autograd path forms the kernel in memory and writes it at the end.
  const bool streamed = args.method != "autograd";
  const std::string run_id = new_run_id();
  std::optional<FileSink<T>> sink;
  std::optional<detail::AtomicFile> out, comp_out;
  if (args.dry_run) {
    // plans only: no output is created
  } else if (streamed) {
    sink.emplace(args.output, args.components,
                 std::vector<std::pair<std::string, std::string>>{
                     {"mode", args.mode}, {"dtype", args.dtype}, {"run_id", run_id}});
  } else {
    out.emplace(args.output);
    if (!args.components.empty()) comp_out.emplace(args.components);
  }

  auto t0 = Clock::now();
  std::optional<Sequential<T>> model;
  model.emplace(load_model<T>(args.model, args.weights, args.seed));
  const Tensor<T> x1 = read_data<T>(args.x1, "--x1");
  std::optional<Tensor<T>> x2;
  if (!args.x2.empty()) x2 = read_data<T>(args.x2, "--x2");
  check_batch(model->input_shape(), x1.shape(), args.x1 + " (--x1)", "N");
  if (x2) {
    const Shape &a = x1.shape(), &b = x2->shape();
    if (a.size() != b.size() || !std::equal(a.begin() + 1, a.end(), b.begin() + 1)) try {
        check_batch(model->input_shape(), b, args.x2 + " (--x2)", "M");
      } catch (const Error& e) {
        throw Error(std::string(e.what()) + "; and other features than " + args.x1 + " (--x1) " + to_string(a));
      }
    check_batch(model->input_shape(), b, args.x2 + " (--x2)", "M");
  }
  const double load_s = seconds_since(t0);

  ProgressBar bar;
  // a tile larger than the batch is the whole batch; the driver's tile counts would overflow near 2^63
  const int64_t samples = std::max(x1.dim(0), x2 ? x2->dim(0) : int64_t{0});
  KernelOptions opt{.mode = mode,
                    .components = !args.components.empty(),
                    .tile = std::min(args.tile, samples),
                    .memory_budget = detail::checked_mul(args.memory_mb, 1000000, "--memory-budget in bytes"),
                    .threads = args.threads};
  if (args.dry_run) {
    dry_run(args, *model, x1, x2, opt);
    return;
  }
  ProgressLog log;
  if (args.progress)
    opt.progress_flops = [&log](int64_t done, int64_t total, double flops) { log.update(done, total, flops); };
  else
    opt.progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
  t0 = Clock::now();
  Kernel<T> k;
  if (streamed)
    k = x2 ? ntk(*model, x1, *x2, opt, *sink) : ntk(*model, x1, opt, *sink);
  else
    k = x2 ? autograd_ntk(*model, x1, *x2, opt) : autograd_ntk(*model, x1, opt);
  const double compute_s = seconds_since(t0);

  t0 = Clock::now();
  if (streamed) {
    sink->commit();
  } else {
    write_kept(*out, comp_out, k, args, run_id);
  }
  const double write_s = seconds_since(t0);

  if (args.stats) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    nlohmann::ordered_json s;
    s["run_id"] = run_id;
    s["mode"] = args.mode;
    s["dtype"] = args.dtype;
    s["method"] = args.method;
    s["n"] = x1.dim(0);
    s["m"] = x2 ? x2->dim(0) : x1.dim(0);
    s["outputs"] = model->outputs();
    s["parameters"] = model->num_parameters();
    s["tile"] = k.tile;
#ifdef _OPENMP
    s["threads"] = args.threads > 0 ? args.threads : omp_get_max_threads();
#else
    s["threads"] = 1;
#endif
    s["load_s"] = load_s;
    s["compute_s"] = compute_s;
    s["write_s"] = write_s;
    s["flops"] = k.flops;
    s["gflops"] = compute_s > 0 ? k.flops / compute_s / 1e9 : 0.0;
    s["peak_rss_mb"] = static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports kilobytes
    // {"3": "gradients", …}: each conv layer's path and evaluation order
    s["conv_methods"] = nlohmann::ordered_json::object();
    for (const MethodUsed& m : k.methods) s["conv_methods"][m.layer] = name(m.method);
    std::cout << s.dump() << std::endl;
  }
}

}  // namespace

void compute(const ComputeArgs& args) {
  if (args.dtype == "float32")
    run<float>(args);
  else
    run<double>(args);
}

}  // namespace xntk::cli
