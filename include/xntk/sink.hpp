#pragma once
/// \file sink.hpp
/// Where a kernel computation puts its result. The explicit driver computes the kernel as a grid of tile
/// pairs, one block of sample pairs at a time, and hands each block to a Sink: in memory (what `ntk`
/// returns), or a FileSink that writes blocks with positioned writes into preallocated files, so that the
/// result never has to fit in memory. When X2 is omitted only blocks with I ≤ J are computed; the sink writes
/// each off-diagonal block and its transpose, so the result is exactly symmetric either way.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xntk/kernel.hpp"

namespace xntk {

/// The shape of a kernel computation's result, as a sink sees it before the first block.
struct KernelLayout {
  int64_t n = 0, m = 0;  ///< samples of X1 and X2 (m = n when X2 is omitted)
  int64_t outputs = 0;   ///< O
  Mode mode = Mode::full;
  bool symmetric = false;  ///< X2 omitted: only blocks I ≤ J come, and the sink completes the rest
  Shape shape;             ///< (N, M, O, O), (N, M) or (N, M, O)
  /// The component names in component order; empty when components were not requested.
  std::vector<std::string> components;
  /// Values per sample pair: O·O, 1 or O.
  int64_t per_pair() const { return mode == Mode::full ? outputs * outputs : mode == Mode::diagonal ? outputs : 1; }
};

/// One block of the result: sample rows [i0, i0 + n1) of X1 by columns [j0, j0 + n2) of X2, stored as
/// (n1, n2, per) values.
struct KernelBlock {
  int64_t i0 = 0, n1 = 0, j0 = 0, n2 = 0;
  /// A block of Θ(X, X) on the diagonal (i0 = j0): only its pairs (i, j ≤ i) hold values; the sink forms
  /// the pairs j > i from them (in full mode with the outputs swapped).
  bool diagonal = false;
  /// A block of Θ(X, X) off the diagonal: the sink also writes its transpose at (j0, i0).
  bool mirrored = false;
};

/// Receives a kernel computation's blocks. `slot` 0 is the total, slot 1 + c component c.
template <class T>
class Sink {
 public:
  virtual ~Sink() = default;
  /// Called once before any block. May throw xntk::Error (e.g. when the result cannot be held).
  virtual void begin(const KernelLayout& layout) = 0;
  /// Bytes of memory this sink holds for a result of this layout (the driver plans its working memory
  /// around them).
  virtual double resident_bytes(const KernelLayout& layout) const = 0;
  /// Where the driver may write the whole result of `slot` in place (one block covering everything, in the
  /// result's own layout), or null (then blocks come through `put`).
  virtual T* whole(int /*slot*/) { return nullptr; }
  /// A finished block of `slot`.
  virtual void put(int slot, const KernelBlock& block, const T* values) = 0;
  /// Called once after the last block.
  virtual void end() = 0;
};

/// The explicit NTK Θ(X1, X2) into a sink (Θ(X, X) when x2 is omitted); returns everything but the tensors.
template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x1, TensorArg<T> x2, const KernelOptions& options,
              Sink<T>& sink);
template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x, const KernelOptions& options, Sink<T>& sink);

/// Writes the kernel into a `.npy` file (little-endian, C order, T's dtype) and, with `components_path`, every
/// component and then "total" into a safetensors file, block by block with positioned writes into files
/// preallocated under temporary names; commit() renames them onto their paths once complete (both or
/// neither: a failure leaves no file under either name). Memory held: one block at a time. The components'
/// metadata holds `metadata` and "kernel_checksum", which ties them to the kernel file (docs/cli.md).
template <class T>
class FileSink final : public Sink<T> {
 public:
  explicit FileSink(std::string kernel_path, std::string components_path = "",
                    std::vector<std::pair<std::string, std::string>> metadata = {});
  ~FileSink() override;
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void begin(const KernelLayout& layout) override;
  double resident_bytes(const KernelLayout&) const override { return 0; }
  void put(int slot, const KernelBlock& block, const T* values) override;
  void end() override;
  /// Renames the finished files onto their paths (after end()); xntk::Error naming the file on failure.
  /// Uncommitted (an error, an exception), the sink removes its temporary files when destroyed.
  void commit();
  /// The kernel's checksum (docs/cli.md) over the values written so far; after end(), the whole kernel's,
  /// as recorded in the components' metadata under "kernel_checksum".
  std::string checksum() const;

 private:
  struct Files;
  std::unique_ptr<Files> files_;
};

}  // namespace xntk
