#pragma once
// A read-only memory map of a whole file: what `xntk analyze` reads a kernel through, so that nothing of the
// kernel's size is allocated for it and its pages are the operating system's to keep or drop.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <memory>
#include <string>

#include "io/file.hpp"
#include "xntk/error.hpp"
#include "xntk/io.hpp"

namespace xntk::detail {

class MappedFile {
 public:
  /// Maps `path` (a regular file; O_NONBLOCK so that a FIFO put in its place cannot block the open);
  /// xntk::Error naming it otherwise.
  explicit MappedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw Error(path + ": cannot read: " + system_reason());
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(path + ": not a regular file; expected a .npy file");
    }
    size_ = static_cast<size_t>(st.st_size);
    data_ = size_ ? mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0) : nullptr;
    ::close(fd);
    if (data_ == MAP_FAILED) {
      data_ = nullptr;
      throw Error(path + ": cannot map the file: " + system_reason());
    }
    if (data_) madvise(data_, size_, MADV_SEQUENTIAL);
  }
  ~MappedFile() {
    if (data_) munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return static_cast<const unsigned char*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

/// Whether the data of the .npy that `info` describes can be read in place: the host's byte order, C order,
/// and starting at a multiple of its value size.
inline bool readable_in_place(const NpyInfo& info) {
  return !info.fortran_order && !info.swapped && info.data_offset % static_cast<uint64_t>(info.itemsize) == 0;
}

/// Maps the .npy at `path` that `info` (read_npy_info) describes; xntk::Error if its size is no longer
/// the header's data offset plus its data.
inline std::shared_ptr<const MappedFile> map_npy(const std::string& path, const NpyInfo& info) {
  auto file = std::make_shared<const MappedFile>(path);
  const uint64_t size =
      info.data_offset + static_cast<uint64_t>(numel(info.shape)) * static_cast<uint64_t>(info.itemsize);
  if (file->size() != size)
    throw Error(path + ": changed while it was read (" + std::to_string(file->size()) + " bytes, the header says " +
                std::to_string(size) + ")");
  return file;
}

}  // namespace xntk::detail
