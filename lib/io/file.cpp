#include "io/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>

#include "io/block_file.hpp"

namespace xntk::detail {

namespace fs = std::filesystem;

std::string system_reason() { return std::strerror(errno); }

InputFile::InputFile(std::string path) : path_(std::move(path)) {
  // stat before opening: opening a FIFO would block until a writer appears
  struct stat st {};
  errno = 0;
  if (stat(path_.c_str(), &st) != 0) throw Error(path_ + ": cannot open for reading: " + system_reason());
  if (S_ISDIR(st.st_mode)) throw Error(path_ + ": is a directory; expected a file");
  if (!S_ISREG(st.st_mode)) throw Error(path_ + ": is not a regular file; expected a file");
  file_ = std::fopen(path_.c_str(), "rb");
  if (!file_) throw Error(path_ + ": cannot open for reading: " + system_reason());
  if (fstat(fileno(file_), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(file_);
    file_ = nullptr;
    throw Error(path_ + ": changed while being opened; expected a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (file_) std::fclose(file_);
}

void InputFile::read(void* buffer, uint64_t n, const std::string& what) {
  if (n > size_ - position_)
    throw Error(path_ + ": truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
                std::to_string(position_) + " but the file has " + std::to_string(size_) + " bytes");
  if (n > 0 && std::fread(buffer, 1, n, file_) != n)
    throw Error(path_ + ": read error in " + what + ": " + system_reason());
  position_ += n;
}

namespace {

// Temporary names of uncommitted outputs, in fixed storage so that a signal handler can unlink them.
constexpr int kSlots = 16;
constexpr size_t kPathMax = 4096;
std::array<std::array<char, kPathMax>, kSlots> pending_paths;
std::array<std::atomic<bool>, kSlots> pending_used;   // claimed by a file
std::array<std::atomic<bool>, kSlots> pending_ready;  // the path is complete and may be unlinked

int register_pending(const std::string& temp) {
  if (temp.size() + 1 > kPathMax) return -1;
  for (int s = 0; s < kSlots; ++s) {
    bool expected = false;
    if (pending_used[s].compare_exchange_strong(expected, true)) {
      std::memcpy(pending_paths[s].data(), temp.c_str(), temp.size() + 1);
      pending_ready[s].store(true);
      return s;
    }
  }
  return -1;  // more than kSlots outputs at once: still removed on errors, just not on signals
}

void unregister_pending(int slot) {
  if (slot < 0) return;
  pending_ready[slot].store(false);
  pending_used[slot].store(false);
}

std::atomic<int> counter{0};

}  // namespace

void remove_pending_files() noexcept {
  for (int s = 0; s < kSlots; ++s)
    if (pending_ready[s].load()) unlink(pending_paths[s].data());
}

namespace {

// Signals whose default action ends the process: a run ended by one must not leave a temporary file.
// SIGKILL and SIGSTOP cannot be caught; SIGTRAP and SIGPROF belong to debuggers and profilers.
constexpr int kCleanupSignals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2,
                                   SIGXCPU, SIGXFSZ, SIGSEGV, SIGBUS,  SIGFPE,  SIGILL,  SIGABRT, SIGSYS};
struct sigaction saved_actions[NSIG];
// for a handler that runs while the stack has overflowed
alignas(16) std::array<char, 64 << 10> alternate_stack;
std::terminate_handler saved_terminate = nullptr;

extern "C" void cleanup_on_signal(int sig) {
  remove_pending_files();
  // what the signal did before we came (die, or a sanitizer's report), once it is unblocked on return
  sigaction(sig, &saved_actions[sig], nullptr);
  raise(sig);
}

void cleanup_on_terminate() {
  remove_pending_files();
  if (saved_terminate) saved_terminate();  // the default one prints the exception, then aborts
  std::abort();
}

void cleanup_at_exit() { remove_pending_files(); }

}  // namespace

void install_cleanup_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  stack_t current{};
  if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
    stack_t alt{};
    alt.ss_sp = alternate_stack.data();
    alt.ss_size = alternate_stack.size();
    sigaltstack(&alt, nullptr);
  }
  for (int sig : kCleanupSignals) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) != 0) continue;
    // ignored when we were started (nohup, a shell's trap '' HUP): the caller wants it ignored
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN) continue;
    saved_actions[sig] = old;
    struct sigaction action {};
    action.sa_handler = cleanup_on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_ONSTACK;
    sigaction(sig, &action, nullptr);
  }
  saved_terminate = std::set_terminate(cleanup_on_terminate);
  std::atexit(cleanup_at_exit);
}

bool is_null_device(const std::string& path) {
  struct stat st {
  }, null{};
  return stat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && stat("/dev/null", &null) == 0 &&
         S_ISCHR(null.st_mode) && st.st_rdev == null.st_rdev;
}

bool same_output_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  // not both there yet: the same directory entry to be
  const fs::path pa(a), pb(b);
  if (pa.filename() != pb.filename()) return false;
  auto directory = [](const fs::path& p) { return p.has_parent_path() ? p.parent_path().string() : std::string("."); };
  return stat(directory(pa).c_str(), &sa) == 0 && stat(directory(pb).c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

bool check_output_target(const std::string& path) {
  if (path.empty()) throw Error("output file name is empty");
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return false;
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory; expected an output file name");
  // opening a FIFO blocks until a reader comes, writing a device is rarely meant: only /dev/null is
  if (!is_null_device(path))
    throw Error(path + ": is " +
                (S_ISFIFO(st.st_mode)   ? "a FIFO"
                 : S_ISSOCK(st.st_mode) ? "a socket"
                 : S_ISCHR(st.st_mode)  ? "a character device"
                 : S_ISBLK(st.st_mode)  ? "a block device"
                                        : "not a regular file") +
                "; expected a regular output file (or /dev/null)");
  return true;
}

namespace {

/// Reserves `bytes` for the open file fd (posix_fallocate, or its size where the file system cannot
/// reserve; a larger file is not shrunk); 0 or the errno.
int reserve(int fd, uint64_t bytes) {
  int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (rc == EOPNOTSUPP || rc == EINVAL) {
    struct stat st {};
    const bool large = fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= bytes;
    rc = large || ftruncate(fd, static_cast<off_t>(bytes)) == 0 ? 0 : errno;
  }
  return rc;
}

std::string reserve_failure(const std::string& target, uint64_t bytes, int rc) {
  return target + ": cannot reserve " + std::to_string(bytes) + " bytes for the output: " + std::strerror(rc);
}

}  // namespace

bool write_fully(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  direct_ = check_output_target(path_);
  if (direct_) {
    temp_ = path_;
  } else {
    const fs::path p(path_);
    const std::string base = p.filename().string();
    temp_ = (p.parent_path() / ("." + base + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(++counter)))
                .string();
  }
  // registered before it exists: a signal between its creation and its registration would leave it behind
  if (!direct_) slot_ = register_pending(temp_);
  errno = 0;
  out_.open(temp_, std::ios::binary | std::ios::trunc);
  if (!out_) {
    const std::string why = system_reason();
    unregister_pending(slot_);
    throw Error(path_ + ": cannot write: " + (why == "Success" ? "cannot create the file" : why));
  }
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() {
  if (done_) return;
  done_ = true;
  if (out_.is_open()) out_.close();
  if (!direct_) {
    std::error_code ec;
    fs::remove(temp_, ec);
    unregister_pending(slot_);
  }
}

void AtomicFile::preallocate(uint64_t bytes) {
  if (done_ || closed_) throw Error(path_ + ": output already closed");
  if (direct_ || bytes == 0) return;
  if (bytes > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
    throw Error(path_ + ": the output needs more bytes than a file can hold");
  const int fd = ::open(temp_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path_ + ": cannot write: " + system_reason());
  const int rc = reserve(fd, bytes);
  ::close(fd);
  if (rc != 0) {
    discard();
    throw Error(reserve_failure(path_, bytes, rc));
  }
}

void AtomicFile::write_at(uint64_t offset, const void* data, uint64_t n) {
  if (done_ || closed_) throw Error(path_ + ": output already closed");
  errno = 0;
  out_.seekp(static_cast<std::streamoff>(offset));
  out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  if (!out_) {
    const std::string why = system_reason();
    discard();
    throw Error(path_ + ": write failed: " + (why == "Success" ? "stream error" : why));
  }
}

void AtomicFile::close() {
  if (done_) throw Error(path_ + ": output already discarded or committed");
  if (closed_) return;
  errno = 0;
  out_.flush();
  const bool written = static_cast<bool>(out_);
  out_.close();
  closed_ = true;
  if (!written || out_.fail()) {
    const std::string why = system_reason();
    discard();
    throw Error(path_ + ": write failed: " + (why == "Success" ? "stream error" : why));
  }
}

void AtomicFile::commit() {
  close();
  if (!direct_) {
    std::error_code ec;
    fs::rename(temp_, path_, ec);
    if (ec) {
      discard();
      throw Error(path_ + ": cannot rename the finished temporary file onto it: " + ec.message());
    }
    unregister_pending(slot_);
  }
  done_ = true;
}

PartialFile::PartialFile(std::string path, std::string target, bool truncate)
    : path_(std::move(path)), target_(std::move(target)) {
  struct stat st {};
  if (stat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error(path_ + ": is not a regular file; expected the partial output of " + target_);
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
  if (fd_ < 0) throw Error(target_ + ": cannot write " + path_ + ": " + system_reason());
}

PartialFile::~PartialFile() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t PartialFile::size() const {
  struct stat st {};
  if (fstat(fd_, &st) != 0) throw Error(target_ + ": cannot read the size of " + path_ + ": " + system_reason());
  return static_cast<uint64_t>(st.st_size);
}

void PartialFile::preallocate(uint64_t bytes) {
  if (bytes == 0) return;
  if (bytes > static_cast<uint64_t>(std::numeric_limits<off_t>::max()))
    throw Error(target_ + ": the output needs more bytes than a file can hold");
  const int rc = reserve(fd_, bytes);
  if (rc != 0) throw Error(reserve_failure(target_, bytes, rc));
}

void PartialFile::write_at(uint64_t offset, const void* data, uint64_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw Error(target_ + ": write failed: " + (w < 0 ? system_reason() : std::string("no progress")));
    p += w;
    offset += static_cast<uint64_t>(w);
    n -= static_cast<uint64_t>(w);
  }
}

void PartialFile::sync() {
  if (fdatasync(fd_) != 0) throw Error(target_ + ": cannot sync " + path_ + ": " + system_reason());
}

void PartialFile::close() {
  if (fd_ < 0) return;
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw Error(target_ + ": write failed: " + system_reason());
}

PendingName::PendingName(const std::string& path) : slot_(register_pending(path)) {}
PendingName::~PendingName() { release(); }
void PendingName::release() {
  unregister_pending(slot_);
  slot_ = -1;
}

void write_file_durably(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp-" + std::to_string(getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot write: " + system_reason());
  const bool ok = write_fully(fd, text.data(), text.size()) && fsync(fd) == 0;
  const std::string why = ok ? std::string() : system_reason();
  ::close(fd);
  if (!ok || std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string reason = ok ? system_reason() : why;
    unlink(temp.c_str());
    throw Error(path + ": cannot write: " + reason);
  }
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    ::close(dir);
  }
}

}  // namespace xntk::detail
