#pragma once
// The kernel's blocks written at their offsets into a .npy and, with components, a safetensors file: what
// the file sink (xntk/sink.hpp) and a resumable or distributed run (lib/cli/) share. The files themselves
// are the caller's (an AtomicFile, a partial file that outlives the process, an MPI-IO file).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/block_file.hpp"
#include "xntk/sink.hpp"

namespace xntk::engine {

template <class T>
class BlockWriter {
 public:
  /// Writes into `kernel` (and `components`, may be null) for the outputs at the two paths (named by errors).
  /// The components' metadata holds `metadata` and "kernel_checksum".
  BlockWriter(std::string kernel_path, std::string components_path, std::map<std::string, std::string> metadata,
              detail::BlockFile* kernel, detail::BlockFile* components);

  /// Takes the layout; with `primary`, writes the headers and preallocates the files (one writer of several
  /// writing the same files does; the others only write blocks).
  void begin(const KernelLayout& layout, bool primary);
  /// A block of `slot` (Sink::put's contract).
  void put(int slot, const KernelBlock& block, const T* values);
  /// The checksum of the total's values written so far and their count (both sums over the blocks).
  uint64_t checksum() const { return checksum_; }
  int64_t written() const { return written_; }
  /// Values of the whole kernel.
  int64_t values() const;
  /// Ends the files once every block of every writer is in: `checksum` and `written` cover all of them
  /// (xntk::Error unless every value was written exactly once); the primary writer completes the components'
  /// header with the checksum. Does not close the files.
  void finish(uint64_t checksum, int64_t written, bool primary);

 private:
  std::string header(uint64_t h) const;
  void write(detail::BlockFile& file, uint64_t offset, const T* v, int64_t n);
  void write_rows(int slot, int64_t r0, int64_t c0, int64_t rows, int64_t cols, const T* src);

  std::string kernel_path_, components_path_;
  std::map<std::string, std::string> metadata_;
  detail::BlockFile* kernel_;
  detail::BlockFile* components_;
  KernelLayout layout_;
  uint64_t kernel_data_ = 0;      // the npy's data offset
  uint64_t components_data_ = 0;  // the safetensors' data offset
  uint64_t tensor_bytes_ = 0;     // bytes of one tensor (the kernel or a component)
  uint64_t checksum_ = 0;         // the total's, over the values written so far
  int64_t written_ = 0;           // values of the total written so far
  size_t components_header_ = 0;  // its length
  std::vector<T> square_, transposed_;
  std::vector<unsigned char> bytes_;
  bool begun_ = false;
};

}  // namespace xntk::engine
