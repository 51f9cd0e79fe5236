#pragma once
// The journal of a resumable `xntk compute --resume` run: beside the partial output OUTPUT.xntk-partial, the
// file OUTPUT.xntk-journal holds one header line (what the run computes: a fingerprint of the model, the
// weights, the inputs and the options, the plan's tile, the run id) and one line per finished tile pair
// (its index, the checksum of its kernel values and their count), each line with a hash of itself, appended
// and synced after the pair's blocks are synced. Rank r > 0 of an MPI run appends to OUTPUT.xntk-journal.r
// (docs/cli.md, "Resuming").

#include <cstdint>
#include <string>
#include <vector>

namespace xntk::cli {

struct JournalEntry {
  int64_t pair = 0;
  uint64_t checksum = 0;  ///< the sum of the pair's kernel values' checksum terms (io/checksum.hpp)
  int64_t values = 0;     ///< kernel values the pair wrote
};

struct JournalState {
  std::string header;  ///< the header line's JSON
  std::vector<JournalEntry> entries;
  std::vector<std::string> files;  ///< the journal files read (the main one first)
};

/// Whether a journal for `path` (OUTPUT.xntk-journal or a rank's) exists.
bool journal_exists(const std::string& path);

/// Reads the main journal `path` and its ranks' (path.1, path.2, …). A last line cut short (a crash, a power
/// cut) is ignored; xntk::Error naming the file for anything else that is not a valid journal, or a rank's
/// journal whose header differs from the main one's.
JournalState read_journal(const std::string& path);

/// Rewrites the main journal `path` with `header` and `entries`, durably and atomically, then removes the
/// ranks' journals in `others` (their entries are in it now).
void rewrite_journal(const std::string& path, const std::string& header, const std::vector<JournalEntry>& entries,
                     const std::vector<std::string>& others);

/// Appends entries to one journal file, each synced before append() returns.
class JournalWriter {
 public:
  /// Opens `path` for appending; with `create`, (re)creates it holding only `header`.
  JournalWriter(const std::string& path, const std::string& header, bool create);
  ~JournalWriter();
  JournalWriter(const JournalWriter&) = delete;
  JournalWriter& operator=(const JournalWriter&) = delete;
  void append(const JournalEntry& e);

 private:
  std::string path_;
  int fd_ = -1;
};

/// A 64-bit hash of bytes (for the journal's fingerprints; not cryptographic).
uint64_t hash_bytes(const void* data, uint64_t n, uint64_t seed = 0);

/// 16 hexadecimal digits.
std::string hex64(uint64_t v);

}  // namespace xntk::cli
