// Entry point of the `xntk` program: argument parsing (CLI11), signal handling, and the mapping of every
// failure to one line on stderr and an exit code (0 ok, 1 runtime error, 2 usage error).

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <new>

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

/// CLI11 takes "" as a value: an empty file name is a usage error, not "no such file" or "not given".
const CLI::Validator kFileName(
    [](std::string& value) -> std::string { return value.empty() ? "expected a file name, got an empty string" : ""; },
    "FILE");

// At most as many threads as any machine has cores, and tens of times this one's: more only exhausts memory.
constexpr uint64_t kMaxThreads = 1024;
// The budget is converted to bytes in an int64.
constexpr uint64_t kMaxMemoryMB = std::numeric_limits<int64_t>::max() / 1000000;

}  // namespace

int main(int argc, char** argv) {
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
  compute->add_option("--threads", c.threads, "Threads (0: the OpenMP default)")
      ->check(integer_up_to(kMaxThreads))
      ->capture_default_str();
  compute->add_option("--tile", c.tile, "Samples per tile (0: from the memory budget)")
      ->check(integer_up_to(std::numeric_limits<int64_t>::max()))
      ->capture_default_str();
  compute
      ->add_option("--memory-budget", c.memory_mb,
                   "Working memory for the tiles in MB, besides the outputs (0: half the available RAM)")
      ->check(integer_up_to(kMaxMemoryMB))
      ->capture_default_str();

  xntk::cli::AnalyzeArgs a;
  CLI::App* analyze = app.add_subcommand("analyze", "Spectrum, condition number and effective rank of Θ(X, X)");
  analyze->add_option("kernel", a.kernel, "Kernel (.npy): (N,N,O,O), (N,N) or (N,N,O)")->required()->check(kFileName);
  analyze->add_option("--components", a.components, "Components (safetensors) from xntk compute --components")
      ->check(kFileName);
  analyze->add_flag("--json", a.json, "Print one JSON object instead of text");
  analyze->add_flag("--eigenvalues", a.eigenvalues, "Also list the eigenvalues in the text output");

  // CLI11 would only say that a subcommand is required; name the word it did not know
  if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "compute" && std::string(argv[1]) != "analyze") {
    std::cerr << "xntk: unknown command " << xntk::detail::quote(argv[1])
              << "; expected compute or analyze (see xntk --help)\n";
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
    } else {
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
