#pragma once
// The processes of one `xntk compute` run: one, or the ranks of an MPI job (`mpirun -np K xntk compute …`,
// `srun`), which split the tile pairs between them and write their blocks into one shared output file.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/block_file.hpp"

namespace xntk::cli {

class Ranks {
 public:
  virtual ~Ranks() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// The name a message uses for this process ("" alone, "rank 1 of 3: " among several).
  std::string prefix() const {
    return size_ > 1 ? "rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ": " : "";
  }
  /// Waits for every rank.
  virtual void barrier() {}
  /// Element-wise sums of v over the ranks (unsigned: mod 2^64), in every rank.
  virtual void sum(std::vector<uint64_t>& /*v*/) {}
  /// Rank 0's text, in every rank.
  virtual void broadcast(std::string& /*text*/) {}
  /// Whether every rank's `ok` is true (an error in one lets the others stop together).
  virtual bool all(bool ok) { return ok; }
  /// The shared output file at `path` for the output `target`, written by this rank (rank 0 creates it,
  /// truncated first when `truncate`, before the others open it).
  virtual std::unique_ptr<detail::BlockFile> open(const std::string& path, const std::string& target, bool truncate);
  /// Ends the whole job after `message` (printed by the caller); returns only in one process.
  virtual void abort() {}

 protected:
  int rank_ = 0, size_ = 1;
};

/// The processes of this run: an MPI job's ranks when xntk was built with MPI and started by an MPI launcher
/// (mpirun, mpiexec, srun: their environment says so), this process alone otherwise. MPI is initialised on
/// the first call and finalised at exit.
Ranks& ranks();

/// Whether this build can run as MPI ranks.
bool mpi_compiled();

}  // namespace xntk::cli
