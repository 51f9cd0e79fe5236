#include "io/file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <filesystem>

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

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) throw Error("output file name is empty");
  std::error_code ec;
  const auto status = fs::status(path_, ec);
  if (fs::is_directory(status)) throw Error(path_ + ": is a directory; expected an output file name");
  direct_ = fs::exists(status) && !fs::is_regular_file(status);
  if (direct_) {
    temp_ = path_;
  } else {
    const fs::path p(path_);
    const std::string base = p.filename().string();
    temp_ = (p.parent_path() / ("." + base + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(++counter)))
                .string();
  }
  errno = 0;
  out_.open(temp_, std::ios::binary | std::ios::trunc);
  if (!out_) {
    const std::string why = system_reason();
    throw Error(path_ + ": cannot write: " + (why == "Success" ? "cannot create the file" : why));
  }
  if (!direct_) slot_ = register_pending(temp_);
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

}  // namespace xntk::detail
