#pragma once
// Fuzz input as a file the readers can open by name, kept in memory (memfd_create): nothing is written to
// disk, so nothing is left behind however the process ends.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace xntk::fuzz {

class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(memfd_create(name, MFD_CLOEXEC)) {
    if (fd_ < 0) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  /// Replaces the content by `size` bytes.
  void set(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  void set(const std::string& bytes) { set(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()); }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

/// Every message of a refused input is short: a long one quotes input it should not.
inline void check_message(const char* what) {
  if (std::string(what).size() > 1000) std::abort();
}

}  // namespace xntk::fuzz
