#pragma once
// Files that a kernel's blocks are written into at their offsets: the interface the block writer uses, and a
// POSIX file under a fixed name that outlives the process (a resumable run's partial output, which a signal,
// a crash or a power cut leaves in place for the next run to continue).

#include <cstdint>
#include <string>

namespace xntk::detail {

/// A preallocated output written by positioned writes. Errors are xntk::Error naming `target`, the final
/// output the file is written for.
class BlockFile {
 public:
  virtual ~BlockFile() = default;
  /// Reserves `bytes` on disk (a full disk fails here, before the writes).
  virtual void preallocate(uint64_t bytes) = 0;
  /// Writes n bytes at byte `offset`.
  virtual void write_at(uint64_t offset, const void* data, uint64_t n) = 0;
  /// Makes what was written durable (on disk, not only in the page cache).
  virtual void sync() = 0;
  /// Closes the file, reporting any failed write.
  virtual void close() = 0;
};

/// A BlockFile at `path`, created when absent (truncated first when `truncate`), for the output `target`;
/// not removed on errors or signals (a resumable run's partial output).
class PartialFile final : public BlockFile {
 public:
  PartialFile(std::string path, std::string target, bool truncate);
  ~PartialFile() override;
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  /// The file's size in bytes now.
  uint64_t size() const;
  void preallocate(uint64_t bytes) override;
  void write_at(uint64_t offset, const void* data, uint64_t n) override;
  void sync() override;
  void close() override;

 private:
  std::string path_, target_;
  int fd_ = -1;
};

/// Registers `path` to be removed by remove_pending_files() (on a signal, std::terminate or exit) until the
/// object is destroyed or release()d: a temporary name that several processes write (MPI ranks).
class PendingName {
 public:
  explicit PendingName(const std::string& path);
  ~PendingName();
  PendingName(const PendingName&) = delete;
  PendingName& operator=(const PendingName&) = delete;
  void release();

 private:
  int slot_ = -1;
};

/// Writes `text` to `path` durably and atomically: a temporary file beside it, fsync, rename, fsync of the
/// directory. xntk::Error naming `path` on failure.
void write_file_durably(const std::string& path, const std::string& text);

}  // namespace xntk::detail
