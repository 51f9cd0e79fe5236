#pragma once
// The `xntk` command line: options of each subcommand and the functions that run them. Runtime problems
// are thrown as xntk::Error (exit code 1); usage problems are CLI11's (exit code 2).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xntk/analysis.hpp"
#include "xntk/io.hpp"

namespace xntk::detail {
class MappedFile;
}

namespace xntk::cli {

struct ComputeArgs {
  std::string model, x1, x2, weights, components, output;
  uint64_t seed = 0;
  std::string mode = "full", method = "explicit", dtype = "float64";
  bool stats = false;
  bool progress = false;
  bool dry_run = false;
  bool resume = false;
  std::string rows, cols;  ///< "a:b" sample ranges of X1 and X2 (empty: all)
  int threads = 0;
  int64_t tile = 0;
  int64_t memory_mb = 0;
};

struct AnalyzeArgs {
  std::string kernel, components;
  bool json = false;
  bool eigenvalues = false;
  bool extremes = false;     ///< λmax and λmin by Lanczos iterations on the memory-mapped kernel
  bool resolve_min = false;  ///< with extremes: no stop at the singularity proof; converge to the file's ε
  int64_t top = 0;           ///< the top-k eigenvalues likewise
  std::string vectors;       ///< where --top writes its eigenvectors (.npy, (k, size))
};

struct TrainArgs {
  std::string model, x, y, weights, output, x_test, y_test, probe, log;
  uint64_t seed = 0;
  double lr = 0, momentum = 0, weight_decay = 0, alpha = 1;
  std::string optimizer = "sgd", loss = "mse", dtype = "float64";
  int64_t steps = 0, epochs = 0, batch_size = 0, log_every = 1, ntk_every = 0;
  uint64_t shuffle_seed = 0;
  bool shuffle = false;  ///< --shuffle-seed given
  bool center = false, linearized = false;
  int threads = 0;
};

struct PredictArgs {
  std::string k_train, y, k_test, f0_train, f0_test, output, test_output;
  std::string loss = "mse";
  double lr = 0;  ///< 0: not given
  std::vector<int64_t> steps;
  std::vector<std::string> times;
  double ridge = 0;
};

/// `xntk train`: trains the model (or its linearisation), logs JSON lines, writes the trained weights.
void train(const TrainArgs& args);

/// `xntk predict`: kernel predictions of gradient-descent training at the requested steps or times.
void predict(const PredictArgs& args);

/// `xntk compute`: writes the kernel (and components) and, with --stats, one JSON line to stdout.
void compute(const ComputeArgs& args);

/// `xntk analyze`: prints the spectrum summary as text or one JSON object.
void analyze(const AnalyzeArgs& args);

/// `xntk analyze --extremes` / `--top k`: Lanczos iterations on the memory-mapped kernel.
void analyze_large(const AnalyzeArgs& args);

/// What `xntk analyze` reads: the kernel and, when named, its components, checked to belong together.
/// A kernel in the host's byte order and C order (as xntk writes it) is read in place through a memory
/// map; any other is converted into `kernel`.
struct AnalyzeInput {
  NpyInfo info;
  std::shared_ptr<const detail::MappedFile> mapped;  ///< the file, when the kernel is read in place
  Tensor<double> kernel;                             ///< the kernel, when it is not
  std::vector<NamedTensor<double>> components;
  /// f(TensorRef<float>) or f(TensorRef<double>) on the kernel's values, wherever they are.
  template <class F>
  decltype(auto) visit(F&& f) const {
    if (!mapped) return f(TensorRef<double>(kernel));
    const unsigned char* at = mapped_data();
    if (info.itemsize == 4) return f(TensorRef<float>(reinterpret_cast<const float*>(at), info.shape));
    return f(TensorRef<double>(reinterpret_cast<const double*>(at), info.shape));
  }

 private:
  const unsigned char* mapped_data() const;
};

/// Reads the kernel and the components of `args`. xntk::Error naming the components file if a component is
/// not shaped as the kernel, if its `kernel_checksum` metadata is not the kernel's, or if its "total" is not
/// the kernel: components written by another run than the kernel.
AnalyzeInput read_analyze_input(const AnalyzeArgs& args);

/// xntk::analyze of what was read, with the tolerance of the kernel's dtype; errors name the file.
Analysis analyze_input(const AnalyzeInput& in, const AnalyzeArgs& args);

}  // namespace xntk::cli
