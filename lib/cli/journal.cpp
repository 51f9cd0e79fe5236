#include "cli/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/block_file.hpp"
#include "io/checksum.hpp"
#include "io/file.hpp"
#include "xntk/error.hpp"

namespace xntk::cli {
namespace {

constexpr const char* kMagic = "xntk-journal ";

std::string entry_text(const JournalEntry& e) {
  return "done " + std::to_string(e.pair) + " " + hex64(e.checksum) + " " + std::to_string(e.values);
}

std::string entry_line(const JournalEntry& e) {
  const std::string t = entry_text(e);
  return t + " " + hex64(hash_bytes(t.data(), t.size())) + "\n";
}

std::string header_line(const std::string& header) {
  const std::string body = kMagic + header;
  return body + " " + hex64(hash_bytes(body.data(), body.size())) + "\n";
}

/// The lines of one journal file: its header and entries.
JournalState read_one(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the journal: " + detail::system_reason());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  JournalState s;
  s.files.push_back(path);
  size_t at = 0;
  int line = 0;
  auto bad = [&](const std::string& what) {
    return Error(path + ": line " + std::to_string(line) + ": " + what +
                 "; expected an xntk compute --resume journal (remove it and its .xntk-partial file to start over)");
  };
  while (at < text.size()) {
    ++line;
    const size_t end = text.find('\n', at);
    if (end == std::string::npos) break;  // the last line cut short: its pair is computed again
    const std::string l = text.substr(at, end - at);
    at = end + 1;
    const size_t space = l.rfind(' ');
    if (space == std::string::npos) throw bad("not a journal line");
    const std::string body = l.substr(0, space), hash = l.substr(space + 1);
    if (hash != hex64(hash_bytes(body.data(), body.size()))) {
      if (at >= text.size()) break;  // the last line, torn
      throw bad("a damaged line");
    }
    if (line == 1) {
      if (body.rfind(kMagic, 0) != 0) throw bad("no journal header");
      s.header = body.substr(std::strlen(kMagic));
      continue;
    }
    JournalEntry e;
    char check[32];
    unsigned long long sum = 0;
    long long pair = 0, values = 0;
    if (std::sscanf(body.c_str(), "done %lld %16llx %lld%1s", &pair, &sum, &values, check) != 3 || pair < 0 ||
        values < 0)
      throw bad("not a journal entry");
    e.pair = pair;
    e.checksum = sum;
    e.values = values;
    s.entries.push_back(e);
  }
  if (s.header.empty()) {
    line = 1;
    throw bad("no journal header");
  }
  return s;
}

void write_all(int fd, const std::string& text, const std::string& path) {
  if (!detail::write_fully(fd, text.data(), text.size()))
    throw Error(path + ": cannot write the journal: " + detail::system_reason());
  if (fdatasync(fd) != 0) throw Error(path + ": cannot sync the journal: " + detail::system_reason());
}

}  // namespace

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t hash_bytes(const void* data, uint64_t n, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = detail::checksum_term(n, seed);
  const uint64_t words = n / 8;
  for (uint64_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);
    h += detail::checksum_term(i, w);
  }
  uint64_t tail = 0;
  if (n > 8 * words) std::memcpy(&tail, p + 8 * words, n - 8 * words);
  return detail::checksum_term(h, tail);
}

bool journal_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

JournalState read_journal(const std::string& path) {
  JournalState s = read_one(path);
  for (int r = 1;; ++r) {
    const std::string other = path + "." + std::to_string(r);
    if (!journal_exists(other)) {
      // a later rank's journal without this one (a run on more ranks that another run of fewer rewrote)
      if (!journal_exists(path + "." + std::to_string(r + 1))) break;
      continue;
    }
    JournalState o = read_one(other);
    if (o.header != s.header)
      throw Error(other + ": a rank's journal of another run than " + path +
                  "; remove the journals and the .xntk-partial files to start over");
    s.entries.insert(s.entries.end(), o.entries.begin(), o.entries.end());
    s.files.push_back(other);
  }
  return s;
}

void rewrite_journal(const std::string& path, const std::string& header, const std::vector<JournalEntry>& entries,
                     const std::vector<std::string>& others) {
  std::string text = header_line(header);
  for (const JournalEntry& e : entries) text += entry_line(e);
  detail::write_file_durably(path, text);
  for (const std::string& o : others)
    if (o != path) std::remove(o.c_str());
}

JournalWriter::JournalWriter(const std::string& path, const std::string& header, bool create) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | (create ? O_TRUNC : 0), 0644);
  if (fd_ < 0) throw Error(path + ": cannot write the journal: " + detail::system_reason());
  if (create) write_all(fd_, header_line(header), path_);
}

JournalWriter::~JournalWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void JournalWriter::append(const JournalEntry& e) { write_all(fd_, entry_line(e), path_); }

}  // namespace xntk::cli
