#pragma once
// A read-only memory map of a whole file: what `xntk analyze` reads a kernel through, so that nothing of the
// kernel's size is allocated for it and its pages are the operating system's to keep or drop.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <string>

#include "io/file.hpp"
#include "xntk/error.hpp"

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

}  // namespace xntk::detail
