// `xntk compute`: load the model, weights and data, check them, compute the kernel, and write the results
// under temporary names that are renamed only once every output is complete.

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>

#include "backend/backend.hpp"
#include "checked.hpp"
#include "cli/commands.hpp"
#include "cli/inputs.hpp"
#include "cli/journal.hpp"
#include "cli/ranks.hpp"
#include "io/checksum.hpp"
#include "io/file.hpp"
#include "ntk/block_writer.hpp"
#include "ntk/driver.hpp"
#include "ntk/plan.hpp"
#include "quote.hpp"
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
  explicit ProgressLog(std::string prefix = "", double every = 5.0)
      : prefix_(std::move(prefix)), every_(every), start_(Clock::now()) {}

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
    std::fprintf(stderr, "xntk compute: %s%lld of %lld steps (%.0f%%), %.1f s elapsed, ~%.1f s left%s\n",
                 prefix_.c_str(), static_cast<long long>(done), static_cast<long long>(total), 100 * f, elapsed, left,
                 rate.c_str());
    std::fflush(stderr);
  }

 private:
  std::string prefix_;
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

/// Samples [begin, end) of a batch.
struct Range {
  int64_t begin = 0, end = 0;
  bool operator==(const Range&) const = default;
};

/// `--rows` / `--cols`: "a:b" as a Python slice of n samples (a or b may be left out; no negative or step
/// forms), all of them when `text` is empty. xntk::Error naming the option when it is not 0 ≤ a < b ≤ n.
Range parse_range(const std::string& text, int64_t n, const std::string& option, const std::string& samples) {
  if (text.empty()) return {0, n};
  const std::string expected = "expected a:b with 0 <= a < b <= " + std::to_string(n) + " (" + samples + ")";
  const size_t colon = text.find(':');
  auto number = [&](const std::string& part, int64_t fallback) -> int64_t {
    if (part.empty()) return fallback;
    if (part.size() > 19 || part.find_first_not_of("0123456789") != std::string::npos)
      throw Error(option + " " + detail::quote(text) + ": " + expected);
    return std::stoll(part);
  };
  if (colon == std::string::npos || text.find(':', colon + 1) != std::string::npos)
    throw Error(option + " " + detail::quote(text) + ": " + expected);
  const Range r{number(text.substr(0, colon), 0), number(text.substr(colon + 1), n)};
  if (r.begin >= r.end || r.end > n) throw Error(option + " " + detail::quote(text) + ": " + expected);
  return r;
}

/// Samples [r.begin, r.end) of x.
template <class T>
TensorRef<T> samples_of(const Tensor<T>& x, Range r) {
  Shape shape = x.shape();
  shape[0] = r.end - r.begin;
  return TensorRef<T>(x.data() + r.begin * (x.dim(0) > 0 ? x.size() / x.dim(0) : 0), shape);
}

/// X's first `count` samples.
template <class T>
TensorRef<T> first_samples(TensorRef<T> x, int64_t count) {
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
void dry_run(const ComputeArgs& args, const Sequential<T>& model, TensorRef<T> x1,
             const std::optional<TensorRef<T>>& x2, const KernelOptions& opt) {
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

/// The fingerprint of what a run computes, by part, for its journal: a journal of another model, other
/// weights, other inputs, other options or another xntk version is refused.
template <class T>
nlohmann::ordered_json fingerprint(const ComputeArgs& args, const Sequential<T>& model, TensorRef<T> a,
                                   const std::optional<TensorRef<T>>& b, int64_t rows0, int64_t cols0) {
  std::ifstream in(args.model, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string model_text = text.str();
  uint64_t weights = 0;
  for (const auto& list : {model.named_parameters(), model.named_buffers()})
    for (const auto& p : list) {
      weights = hash_bytes(p.name.data(), p.name.size(), weights);
      weights = hash_bytes(p.tensor->data(), static_cast<uint64_t>(p.tensor->size()) * sizeof(T), weights);
    }
  auto data = [](TensorRef<T> x) {
    const std::string shape = to_string(x.shape());
    return hex64(
        hash_bytes(x.data(), static_cast<uint64_t>(x.size()) * sizeof(T), hash_bytes(shape.data(), shape.size())));
  };
  nlohmann::ordered_json j;
  j["model"] = hex64(hash_bytes(model_text.data(), model_text.size()));
  j["weights"] = hex64(weights);
  j["x1"] = data(a);
  j["x2"] = b ? data(*b) : "none";
  j["options"] = "mode=" + args.mode + " dtype=" + args.dtype +
                 " components=" + (args.components.empty() ? "no" : "yes") + " rows=" + std::to_string(rows0) + ":" +
                 std::to_string(rows0 + a.dim(0)) +
                 " cols=" + (b ? std::to_string(cols0) + ":" + std::to_string(cols0 + b->dim(0)) : "symmetric");
  j["xntk"] = XNTK_VERSION;
  return j;
}

/// A resumable (--resume) or distributed (several MPI ranks) run's sink: the blocks go into the shared files
/// through a BlockWriter; this rank takes its share of the pairs that no journal holds (the q-th pair left to
/// do goes to rank q mod K) and, when journaled, records each as its blocks are synced.
template <class T>
class SharedSink final : public Sink<T>, public engine::PairControl {
 public:
  SharedSink(engine::BlockWriter<T>& writer, std::vector<detail::BlockFile*> files, std::vector<char> done,
             JournalWriter* journal, const Ranks& ranks)
      : writer_(writer), files_(std::move(files)), done_(std::move(done)), journal_(journal), ranks_(ranks) {}

  void begin(const KernelLayout&) override {}  // run_shared began the writer
  double resident_bytes(const KernelLayout&) const override { return 0; }
  void put(int slot, const KernelBlock& block, const T* values) override { writer_.put(slot, block, values); }
  void end() override {}

  bool take(size_t index, const engine::TilePair&) override {
    if (index < done_.size() && done_[index]) return false;
    return left_++ % static_cast<size_t>(ranks_.size()) == static_cast<size_t>(ranks_.rank());
  }
  void finished(size_t index) override {
    if (!journal_) return;
    for (detail::BlockFile* f : files_) f->sync();
    journal_->append({static_cast<int64_t>(index), writer_.checksum() - checksum_, writer_.written() - written_});
    checksum_ = writer_.checksum();
    written_ = writer_.written();
  }

 private:
  engine::BlockWriter<T>& writer_;
  std::vector<detail::BlockFile*> files_;
  std::vector<char> done_;
  JournalWriter* journal_;
  const Ranks& ranks_;
  size_t left_ = 0;
  uint64_t checksum_ = 0;
  int64_t written_ = 0;
};

/// `--resume` or several MPI ranks: the explicit kernel into the outputs through a journal and/or shared by
/// the ranks (docs/cli.md, "Resuming" and "MPI"). Returns this rank's report (flops summed over the ranks).
template <class T>
Kernel<T> run_shared(const ComputeArgs& args, const Sequential<T>& model, TensorRef<T> a,
                     const std::optional<TensorRef<T>>& b, KernelOptions opt, int64_t rows0, int64_t cols0,
                     std::string& run_id) {
  Ranks& R = ranks();
  const bool root = R.rank() == 0;
  const KernelLayout layout = engine::layout_of(model, a.dim(0), b ? b->dim(0) : a.dim(0), !b, opt);
  const std::string partial = args.output + ".xntk-partial", journal_path = args.output + ".xntk-journal";
  const std::string comp_partial = args.components.empty() ? "" : args.components + ".xntk-partial";
  // rank 0 decides: the tile (the journal's when continuing), the run id, the pairs already done
  nlohmann::ordered_json decision;
  if (root) {
    nlohmann::ordered_json header = fingerprint(args, model, a, b, rows0, cols0);
    std::vector<JournalEntry> entries;
    std::vector<std::string> files;
    bool fresh = true;
    if (args.resume && journal_exists(journal_path)) {
      JournalState st = read_journal(journal_path);
      nlohmann::ordered_json old;
      try {
        old = nlohmann::ordered_json::parse(st.header);
      } catch (const nlohmann::json::exception&) {
        throw Error(journal_path + ": a damaged journal header; remove it and " + partial + " to start over");
      }
      for (const char* part : {"xntk", "options", "model", "weights", "x1", "x2"})
        if (!old.contains(part) || old[part] != header[part]) {
          const std::string what = std::string(part) == "xntk" ? "the xntk version"
                                   : std::string(part) == "options"
                                       ? "the options (mode, dtype, components, rows, cols)"
                                   : std::string(part) == "model"   ? "the model file"
                                   : std::string(part) == "weights" ? "the weights"
                                                                    : std::string("the inputs ") + part;
          throw Error(journal_path + ": the journal is of another run: " + what + " differ; remove it and " + partial +
                      " to start over, or run without --resume");
        }
      if (!old.contains("tile") || !old["tile"].is_number_integer() || !old.contains("run_id"))
        throw Error(journal_path + ": a damaged journal header; remove it and " + partial + " to start over");
      const int64_t tile = old["tile"].get<int64_t>();
      if (opt.tile > 0 && opt.tile != tile)
        throw Error("--tile " + std::to_string(opt.tile) + ": the journal " + journal_path +
                    " continues a run with tiles of " + std::to_string(tile) + "; give --tile " + std::to_string(tile) +
                    " or none");
      struct stat st_partial {};
      if (stat(partial.c_str(), &st_partial) != 0 ||
          (!comp_partial.empty() && stat(comp_partial.c_str(), &st_partial) != 0))
        throw Error(journal_path + ": its partial output " +
                    (comp_partial.empty() ? partial : partial + " or " + comp_partial) +
                    " is missing; remove the journal to start over");
      header = old;
      entries = std::move(st.entries);
      files = std::move(st.files);
      fresh = false;
    } else {
      for (int r = 1; journal_exists(journal_path + "." + std::to_string(r)); ++r)
        files.push_back(journal_path + "." + std::to_string(r));  // a finished run's leftovers
      KernelOptions planning = opt;
      header["tile"] = engine::make_plan(model, layout, planning, 0.0).tile;
      header["run_id"] = run_id;
    }
    decision["header"] = header.dump();
    decision["fresh"] = fresh;
    decision["done"] = nlohmann::ordered_json::array();
    uint64_t checksum = 0;
    int64_t values = 0;
    for (const JournalEntry& e : entries) {
      decision["done"].push_back(e.pair);
      checksum += e.checksum;
      values += e.values;
    }
    decision["checksum"] = checksum;
    decision["values"] = values;
    if (args.resume) {
      // one main journal with every finished pair, the ranks' own ones started afresh below
      rewrite_journal(journal_path, decision["header"].get<std::string>(), entries, files);
    }
  }
  std::string text = root ? decision.dump() : "";
  R.broadcast(text);
  if (!root) decision = nlohmann::ordered_json::parse(text);
  const nlohmann::ordered_json header = nlohmann::ordered_json::parse(decision["header"].get<std::string>());
  opt.tile = header["tile"].get<int64_t>();
  run_id = header["run_id"].get<std::string>();
  const bool fresh = decision["fresh"].get<bool>();
  const engine::Plan plan = engine::make_plan(model, layout, opt, 0.0);
  std::vector<char> done(plan.pairs.size(), 0);
  for (const auto& p : decision["done"]) {
    const int64_t i = p.get<int64_t>();
    if (i < 0 || i >= static_cast<int64_t>(done.size()))
      throw Error(journal_path + ": tile pair " + std::to_string(i) + " of a plan of " +
                  std::to_string(plan.pairs.size()) + "; remove it and " + partial + " to start over");
    done[static_cast<size_t>(i)] = 1;
  }

  // the shared files: under --resume the partial names, which outlive the process; otherwise temporary
  // names that the ranks remove on a signal and rank 0 renames at the end
  const std::string kernel_file = args.resume ? partial : args.output + ".tmp-" + run_id;
  const std::string comp_file = args.components.empty() ? ""
                                : args.resume           ? comp_partial
                                                        : args.components + ".tmp-" + run_id;
  std::optional<detail::PendingName> pending_kernel, pending_comp;
  if (!args.resume) {
    pending_kernel.emplace(kernel_file);
    if (!comp_file.empty()) pending_comp.emplace(comp_file);
  }
  std::unique_ptr<detail::BlockFile> kf, cf;
  std::optional<JournalWriter> journal;
  std::optional<engine::BlockWriter<T>> writer;
  try {
    kf = R.open(kernel_file, args.output, fresh);
    if (!comp_file.empty()) cf = R.open(comp_file, args.components, fresh);
    if (args.resume)
      journal.emplace(root ? journal_path : journal_path + "." + std::to_string(R.rank()),
                      decision["header"].get<std::string>(), !root);
    writer.emplace(args.output, args.components,
                   std::map<std::string, std::string>{{"mode", args.mode}, {"dtype", args.dtype}, {"run_id", run_id}},
                   kf.get(), cf.get());
    // rank 0 writes the headers and preallocates before any rank writes a block (an MPI-IO preallocation may
    // rewrite what is there)
    writer->begin(layout, root);
  } catch (const Error&) {
    // a fresh resumable run that could not even reserve its files (a full disk) has nothing worth continuing:
    // its partial files and journal go, as a run without --resume leaves nothing
    writer.reset();
    journal.reset();
    kf.reset();
    cf.reset();
    if (root && args.resume && fresh) {
      for (const std::string& f : {partial, comp_partial, journal_path})
        if (!f.empty()) std::remove(f.c_str());
    }
    throw;
  }
  std::vector<detail::BlockFile*> files = {kf.get()};
  if (cf) files.push_back(cf.get());
  R.barrier();
  SharedSink<T> sink(*writer, files, done, journal ? &*journal : nullptr, R);
  Kernel<T> k = engine::explicit_kernel(model, a, b ? &*b : nullptr, opt, backend::get(opt.backend), sink, &sink);
  R.barrier();  // rank 0's headers are in before anyone's blocks end the files

  std::vector<uint64_t> totals = {writer->checksum(), static_cast<uint64_t>(writer->written()),
                                  static_cast<uint64_t>(std::llround(k.flops))};
  R.sum(totals);
  k.flops = static_cast<double>(totals[2]);
  if (root) {
    const uint64_t checksum = totals[0] + decision["checksum"].get<uint64_t>();
    const int64_t values = static_cast<int64_t>(totals[1]) + decision["values"].get<int64_t>();
    writer->finish(checksum, values, true);
  }
  for (detail::BlockFile* f : files) f->sync();
  kf->close();
  if (cf) cf->close();
  R.barrier();
  if (root) {
    if (std::rename(kernel_file.c_str(), args.output.c_str()) != 0)
      throw Error(args.output + ": cannot rename the finished " + kernel_file + " onto it: " + detail::system_reason());
    if (!comp_file.empty() && std::rename(comp_file.c_str(), args.components.c_str()) != 0)
      throw Error(args.components + ": cannot rename the finished " + comp_file +
                  " onto it: " + detail::system_reason());
    if (args.resume) {
      std::remove(journal_path.c_str());
      for (int r = 1; r < R.size(); ++r) std::remove((journal_path + "." + std::to_string(r)).c_str());
    }
  }
  if (pending_kernel) pending_kernel->release();
  if (pending_comp) pending_comp->release();
  R.barrier();
  return k;
}

template <class T>
void run(const ComputeArgs& args) {
  const Mode mode = parse_mode(args.mode);
  // Create the outputs first: an unwritable destination fails now, not after a long computation. The explicit
  // path streams its blocks into the files as they are computed (the kernel never has to fit in memory);
  // the autograd path forms the kernel in memory and writes it at the end.
  const bool streamed = args.method != "autograd";
  std::string run_id = new_run_id();
  Ranks& R = ranks();
  // --resume, or several MPI ranks: shared files under fixed names (run_shared)
  const bool shared = !args.dry_run && (args.resume || R.size() > 1);
  if (shared) {
    if (!streamed)
      throw Error(std::string(args.resume ? "--resume" : "several MPI ranks") +
                  ": the explicit method only (--method autograd forms the kernel in memory)");
    if (detail::is_null_device(args.output) || (!args.components.empty() && detail::is_null_device(args.components)))
      throw Error(std::string(args.resume ? "--resume" : "several MPI ranks") +
                  ": expected regular output files, not the null device");
    if (!args.components.empty() && detail::same_output_file(args.output, args.components))
      throw Error(args.components + ": the components would overwrite the kernel " + args.output +
                  "; expected another file");
    // the final names are checked as the file sink checks them (a directory, a FIFO …) before any work
    detail::check_output_target(args.output);
    if (!args.components.empty()) detail::check_output_target(args.components);
  }
  std::optional<FileSink<T>> sink;
  std::optional<detail::AtomicFile> out, comp_out;
  if (args.dry_run || shared) {
    // plans only, or run_shared's own files
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
  // --rows / --cols: a block Θ(X1[a:b], X2[c:d]); X2 is X1 when not given, and the block of rows a:b by
  // columns a:b of Θ(X, X) is computed as the symmetric kernel of those samples
  const Range rows = parse_range(args.rows, x1.dim(0), "--rows", "the samples of " + args.x1 + " (--x1)");
  const Tensor<T>& columns_of = x2 ? *x2 : x1;
  const Range cols = parse_range(args.cols, columns_of.dim(0), "--cols",
                                 "the samples of " + (x2 ? args.x2 + " (--x2)" : args.x1 + " (--x1)"));
  const TensorRef<T> a = samples_of(x1, rows);
  std::optional<TensorRef<T>> b;
  if (x2 || !(rows == cols)) b = samples_of(columns_of, cols);

  ProgressBar bar;
  // a tile larger than the batch is the whole batch; the driver's tile counts would overflow near 2^63
  const int64_t samples = std::max(a.dim(0), b ? b->dim(0) : int64_t{0});
  KernelOptions opt{.mode = mode,
                    .components = !args.components.empty(),
                    .tile = std::min(args.tile, samples),
                    .memory_budget = detail::checked_mul(args.memory_mb, 1000000, "--memory-budget in bytes"),
                    .threads = args.threads};
  if (args.dry_run) {
    if (R.rank() == 0) dry_run(args, *model, a, b, opt);
    return;
  }
  ProgressLog log(R.prefix());
  if (args.progress)
    opt.progress_flops = [&log](int64_t done, int64_t total, double flops) { log.update(done, total, flops); };
  else
    opt.progress = [&bar](int64_t done, int64_t total) { bar.update(done, total); };
  t0 = Clock::now();
  Kernel<T> k;
  if (shared)
    k = run_shared(args, *model, a, b, opt, rows.begin, cols.begin, run_id);
  else if (streamed)
    k = b ? ntk(*model, a, *b, opt, *sink) : ntk(*model, a, opt, *sink);
  else
    k = b ? autograd_ntk(*model, a, *b, opt) : autograd_ntk(*model, a, opt);
  const double compute_s = seconds_since(t0);

  t0 = Clock::now();
  if (shared) {
    // run_shared renamed the outputs
  } else if (streamed) {
    sink->commit();
  } else {
    write_kept(*out, comp_out, k, args, run_id);
  }
  const double write_s = seconds_since(t0);

  if (args.stats && R.rank() == 0) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    nlohmann::ordered_json s;
    s["run_id"] = run_id;
    s["mode"] = args.mode;
    s["dtype"] = args.dtype;
    s["method"] = args.method;
    s["n"] = a.dim(0);
    s["m"] = b ? b->dim(0) : a.dim(0);
    s["outputs"] = model->outputs();
    s["parameters"] = model->num_parameters();
    s["tile"] = k.tile;
#ifdef _OPENMP
    s["threads"] = args.threads > 0 ? args.threads : omp_get_max_threads();
#else
    s["threads"] = 1;
#endif
    s["ranks"] = R.size();
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
  Ranks& R = ranks();
  try {
    if (args.dtype == "float32")
      run<float>(args);
    else
      run<double>(args);
  } catch (const std::exception& e) {
    if (R.size() == 1) throw;
    // one rank's error ends the job (the others would wait for it at the next collective)
    std::fprintf(stderr, "xntk: %s%s\n", R.prefix().c_str(), e.what());
    if (args.resume)
      std::fprintf(stderr, "xntk: %sthe finished tiles are journaled; run the same command again to continue\n",
                   R.prefix().c_str());
    R.abort();
    throw;
  }
}

}  // namespace xntk::cli
