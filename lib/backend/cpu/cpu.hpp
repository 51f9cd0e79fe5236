#pragma once
// The CPU backend: OpenBLAS (or Eigen) for the dense products and our own kernels for the rest. Its code is
// compiled once per instruction set (generic x86-64, AVX2, AVX-512; variant_*.cpp) and the variant this CPU
// runs best is picked at run time, so one build runs on any x86-64 machine.
//
// Where a fast path applies is decided here, never in a layer: each has a Choice, `automatic` by default
// (the thresholds measured on the development machines, docs/design.md), and tests force each one `on`
// (taken wherever its kernel can compute the shape) or `off` in turn against the reference backend.

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace xntk::backend::cpu {

/// The instruction sets the CPU backend is compiled for.
enum class Isa { generic, avx2, avx512 };

/// "generic", "avx2", "avx512".
const char* name(Isa isa);
/// Every variant compiled in, in increasing order.
std::vector<Isa> compiled();
/// Whether this CPU runs `isa`'s variant (AVX2 with FMA; AVX-512 F, CD, BW, DQ and VL).
bool supported(Isa isa);
/// The best variant this CPU runs.
Isa best();

/// Whether a fast path is taken: automatic (by the measured thresholds), on (wherever its kernel can
/// compute the shape), off (never).
enum class Choice { automatic, on, off };

/// The fast paths. Each primitive's plain route (BLAS, im2col + GEMM, scalar loops) is always available.
struct Paths {
  Isa isa = best();
  /// Linear forward of up to 32 samples: our register-tiled kernel instead of a GEMM that packs all of W.
  Choice skinny = Choice::automatic;
  /// Products that skip the columns a ReLU zeroed (Linear backward, conv per-sample weight gradients).
  Choice masked_product = Choice::automatic;
  /// Inside the masked product: tiles that compute only the columns a ReLU below keeps (needs AVX-512).
  Choice gated_tiles = Choice::automatic;
  /// The full-mode deltas Gram summed over the units both samples have non-zero.
  Choice masked_gram = Choice::automatic;
  /// Stride-1 convolution forward and input derivative without im2col.
  Choice direct_conv = Choice::automatic;
  /// Stride-1 convolution forward and input derivative vectorised over the output's channels (conv_channels)
  /// instead of along image rows; automatic only while direct_conv is, and where it fills more vector lanes.
  Choice channel_conv = Choice::automatic;
  /// Small Grams and SYRKs over long rows as two halves of k side by side (2 threads).
  Choice split_k = Choice::automatic;
  /// float tanh forward through a vectorised exp (the result equals std::tanh rounded once).
  Choice fast_tanh = Choice::automatic;
};

/// The fast paths in a fixed order (the index of `taken`).
enum class Path { skinny, masked_product, gated_tiles, masked_gram, direct_conv, split_k, fast_tanh, channel_conv };
inline constexpr size_t kPaths = 8;
/// Each path's name ("skinny", "masked_product", …) and member of Paths, in Path order.
std::vector<std::pair<std::string, Choice Paths::*>> path_names();
/// Whether variant `isa` holds the kernel of a path at all (gated tiles need AVX-512's two-table permutes).
bool compiled_in(Isa isa, Path path);

/// A CPU backend: the Backend interface, and how often each fast path was taken (calls of a primitive that
/// took it), so that a test can tell which code it ran.
class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const Paths& paths) : paths_(paths) {}
  const Paths& paths() const { return paths_; }
  int64_t taken(Path p) const { return taken_[static_cast<size_t>(p)].load(std::memory_order_relaxed); }
  void count(Path p) const { taken_[static_cast<size_t>(p)].fetch_add(1, std::memory_order_relaxed); }

 private:
  Paths paths_;
  mutable std::array<std::atomic<int64_t>, kPaths> taken_{};
};

/// A CPU backend with the given paths (Error if `paths.isa` is not supported by this CPU).
std::unique_ptr<CpuBackend> make(const Paths& paths = {});

/// The process-wide CPU backend with automatic paths on the best instruction set.
const CpuBackend& instance();

}  // namespace xntk::backend::cpu
