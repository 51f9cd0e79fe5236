#pragma once
// File plumbing shared by the readers, the writers and the command line: a checked binary input file,
// an output file that appears under its name only once complete, and little-endian conversions.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "xntk/error.hpp"

namespace xntk::detail {

/// A regular file opened for reading, its size known before anything is read, so that headers can be
/// validated against it before any allocation.
class InputFile {
 public:
  /// Opens `path`; xntk::Error naming it if it is missing, unreadable, a directory or not a regular file.
  explicit InputFile(std::string path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  uint64_t position() const { return position_; }
  /// Reads exactly n bytes; xntk::Error "truncated" naming `what` if the file ends first.
  void read(void* buffer, uint64_t n, const std::string& what);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0, position_ = 0;
};

/// An output file written under a temporary name in the target's directory and renamed onto the target
/// by commit(); destroyed uncommitted (an error, an exception), it removes the temporary file, and the
/// handlers of install_cleanup_handlers() remove it on a signal or std::terminate. The null device is
/// written directly (renaming over it would replace the device); any other existing target that is not a
/// regular file (a FIFO, which would block, a socket, a device, a directory) is refused.
class AtomicFile {
 public:
  /// Creates the temporary file now, so that an unwritable destination fails before any long computation;
  /// xntk::Error naming the target if it is empty, unwritable or an existing non-regular file.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ostream& stream() { return out_; }
  const std::string& path() const { return path_; }
  /// Reserves `bytes` for the file on disk now (posix_fallocate, or the file's size where the file system
  /// cannot reserve), so that a full disk fails before the writes; xntk::Error naming the target.
  void preallocate(uint64_t bytes);
  /// Writes n bytes at byte `offset` of the file (a positioned write); xntk::Error naming the target.
  void write_at(uint64_t offset, const void* data, uint64_t n);
  /// Flushes and closes the temporary file, checking that everything was written (a full disk shows here);
  /// xntk::Error naming the target on failure. Lets a caller with several outputs finish them all before
  /// renaming any.
  void close();
  /// close() if not yet done, then renames onto the target; xntk::Error naming the target on failure.
  void commit();
  /// Removes the temporary file (idempotent; commit() after discard() is an error).
  void discard();

 private:
  std::string path_, temp_;
  std::ofstream out_;
  int slot_ = -1;
  bool direct_ = false, closed_ = false, done_ = false;
};

/// Whether the output `path` is the null device (written directly); xntk::Error naming it if it is empty, a
/// directory or another file that is not regular (a FIFO would block, a socket, a device). What AtomicFile
/// checks before creating its temporary file.
bool check_output_target(const std::string& path);

/// Writes n bytes to the file descriptor, retrying short writes and EINTR; false on an error (errno says it).
bool write_fully(int fd, const void* data, size_t n);

/// Removes every temporary file of an uncommitted AtomicFile. Async-signal-safe (unlink only).
void remove_pending_files() noexcept;

/// For a program that writes AtomicFiles: on the signals that end a process (SIGHUP, SIGINT, SIGTERM,
/// SIGPIPE, SIGXFSZ…, and the crashes SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), on std::terminate and on
/// exit(), removes the pending temporary files, then lets the signal do what it did before (the default, or
/// a sanitizer's handler). A signal ignored at startup (nohup's SIGHUP) stays ignored. Crashes run on an
/// alternate signal stack, so that a stack overflow is cleaned up too. Idempotent.
void install_cleanup_handlers();

/// Whether two output paths name the same file: the same existing file (through hard or symbolic links),
/// or the same name in the same directory, however the paths spell it ("o/K.npy", "./o/K.npy").
bool same_output_file(const std::string& a, const std::string& b);

/// Whether `path` is the null device (/dev/null or another name of it).
bool is_null_device(const std::string& path);

/// "path: " + strerror(errno) style reason for the last failed system call.
std::string system_reason();

/// Byte-swaps a value of 2, 4 or 8 bytes.
template <class U>
U byteswap(U v) {
  unsigned char b[sizeof(U)];
  std::memcpy(b, &v, sizeof(U));
  for (size_t i = 0; i < sizeof(U) / 2; ++i) std::swap(b[i], b[sizeof(U) - 1 - i]);
  std::memcpy(&v, b, sizeof(U));
  return v;
}

/// Converts between little-endian file order and the host's order (its own inverse).
template <class U>
U little_endian(U v) {
  if constexpr (std::endian::native == std::endian::little)
    return v;
  else
    return byteswap(v);
}

/// Reads `count` float32 (itemsize 4) or float64 (8) values, or int64 ones when `integer` (itemsize 8), byte-swapped
/// when `swap`, into dst converted to T; in chunks, so a conversion never doubles the memory.
template <class T>
void read_values(InputFile& f, T* dst, uint64_t count, int itemsize, bool swap, const std::string& what,
                 bool integer = false) {
  constexpr uint64_t chunk = 1 << 16;
  if (itemsize == sizeof(T) && !swap && !integer) {
    f.read(dst, count * sizeof(T), what);
    return;
  }
  std::vector<unsigned char> buf(static_cast<size_t>(std::min(count, chunk)) * static_cast<size_t>(itemsize));
  for (uint64_t done = 0; done < count;) {
    const uint64_t k = std::min(chunk, count - done);
    f.read(buf.data(), k * static_cast<uint64_t>(itemsize), what);
    for (uint64_t i = 0; i < k; ++i) {
      if (itemsize == 4) {
        uint32_t u;
        std::memcpy(&u, buf.data() + 4 * i, 4);
        if (swap) u = byteswap(u);
        dst[done + i] = static_cast<T>(std::bit_cast<float>(u));
      } else {
        uint64_t u;
        std::memcpy(&u, buf.data() + 8 * i, 8);
        if (swap) u = byteswap(u);
        dst[done + i] = integer ? static_cast<T>(std::bit_cast<int64_t>(u)) : static_cast<T>(std::bit_cast<double>(u));
      }
    }
    done += k;
  }
}

}  // namespace xntk::detail
