#pragma once
// The `xntk` command line: options of each subcommand and the functions that run them. Runtime problems
// are thrown as xntk::Error (exit code 1); usage problems are CLI11's (exit code 2).

#include <cstdint>
#include <string>

namespace xntk::cli {

struct ComputeArgs {
  std::string model, x1, x2, weights, components, output;
  uint64_t seed = 0;
  std::string mode = "full", method = "explicit", dtype = "float64";
  bool stats = false;
  int threads = 0;
  int64_t tile = 0;
  int64_t memory_mb = 0;
};

struct AnalyzeArgs {
  std::string kernel, components;
  bool json = false;
  bool eigenvalues = false;
};

/// `xntk compute`: writes the kernel (and components) and, with --stats, one JSON line to stdout.
void compute(const ComputeArgs& args);

/// `xntk analyze`: prints the spectrum summary as text or one JSON object.
void analyze(const AnalyzeArgs& args);

}  // namespace xntk::cli
