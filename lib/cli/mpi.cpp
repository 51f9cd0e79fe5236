// The ranks of an MPI job (built when CMake finds MPI): collectives over MPI_COMM_WORLD, and the shared output
// written through MPI-IO, each rank with its own handle (opened on MPI_COMM_SELF, so that a rank syncs its
// blocks for its journal without waiting for the others).

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "cli/ranks.hpp"
#include "xntk/error.hpp"

namespace xntk::cli {
namespace {

std::string mpi_reason(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, static_cast<size_t>(std::max(0, length)));
}

class MpiFile final : public detail::BlockFile {
 public:
  MpiFile(const std::string& path, std::string target, bool truncate) : path_(path), target_(std::move(target)) {
    const int rc = MPI_File_open(MPI_COMM_SELF, path.c_str(), MPI_MODE_RDWR | MPI_MODE_CREATE, MPI_INFO_NULL, &file_);
    if (rc != MPI_SUCCESS) throw Error(target_ + ": cannot write " + path + " (MPI-IO): " + mpi_reason(rc));
    open_ = true;
    if (truncate) check(MPI_File_set_size(file_, 0), "cannot truncate");
  }
  ~MpiFile() override {
    if (open_) MPI_File_close(&file_);
  }
  void preallocate(uint64_t bytes) override {
    // through the POSIX file: Open MPI 4.1's MPI_File_preallocate rewrites the file's data in chunks and
    // damaged a resumed output at its 32 MiB boundary here; a parallel file system that is not POSIX-visible
    // gets the file's size set instead
    try {
      detail::PartialFile(path_, target_, false).preallocate(bytes);
    } catch (const Error&) {
      MPI_Offset size = 0;
      check(MPI_File_get_size(file_, &size), "cannot read the size");
      if (static_cast<uint64_t>(size) < bytes)
        check(MPI_File_set_size(file_, static_cast<MPI_Offset>(bytes)),
              "cannot reserve " + std::to_string(bytes) + " bytes for the output");
    }
  }
  void write_at(uint64_t offset, const void* data, uint64_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const int count = static_cast<int>(std::min<uint64_t>(n, 1u << 30));
      MPI_Status status;
      check(MPI_File_write_at(file_, static_cast<MPI_Offset>(offset), p, count, MPI_BYTE, &status), "write failed");
      p += count;
      offset += static_cast<uint64_t>(count);
      n -= static_cast<uint64_t>(count);
    }
  }
  void sync() override { check(MPI_File_sync(file_), "cannot sync"); }
  void close() override {
    if (!open_) return;
    open_ = false;
    check(MPI_File_close(&file_), "write failed");
  }

 private:
  void check(int rc, const std::string& what) {
    if (rc != MPI_SUCCESS) throw Error(target_ + ": " + what + " (MPI-IO): " + mpi_reason(rc));
  }
  std::string path_, target_;
  MPI_File file_{};
  bool open_ = false;
};

class MpiRanks final : public Ranks {
 public:
  MpiRanks() {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    std::atexit([] {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized) MPI_Finalize();
    });
  }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  void sum(std::vector<uint64_t>& v) override {
    MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  }
  void broadcast(std::string& text) override {
    uint64_t n = text.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    text.resize(n);
    MPI_Bcast(text.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  bool all(bool ok) override {
    int v = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return v == 1;
  }
  std::unique_ptr<detail::BlockFile> open(const std::string& path, const std::string& target, bool truncate) override {
    // rank 0 creates (and truncates) the file before the others open it
    std::unique_ptr<detail::BlockFile> f;
    std::string failure;
    if (rank_ == 0) try {
        f = std::make_unique<MpiFile>(path, target, truncate);
      } catch (const Error& e) {
        failure = e.what();
      }
    broadcast(failure);
    if (!failure.empty()) throw Error(failure);
    if (rank_ != 0) f = std::make_unique<MpiFile>(path, target, false);
    return f;
  }
  void abort() override {
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
};

}  // namespace

Ranks& mpi_ranks() {
  static MpiRanks ranks;
  return ranks;
}

}  // namespace xntk::cli
