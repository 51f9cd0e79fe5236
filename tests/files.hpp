#pragma once
// Test utilities for files: a scratch directory, raw byte files, and hand-built .npy / safetensors bytes
// (so that malformed files can be made byte by byte).

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace xntk::test {

/// A fresh directory under the system's temporary directory, removed with its contents at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("xntk-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }
  /// Names of the entries in the directory (hidden ones included), sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

template <class U>
std::string raw(const std::vector<U>& values) {
  std::string s(values.size() * sizeof(U), '\0');
  if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
  return s;
}

template <class U>
std::string le(U v) {
  std::string s(sizeof(U), '\0');
  std::memcpy(s.data(), &v, sizeof(U));
  return s;
}

/// A .npy file of format `major`.0 with the given header dict text and data bytes.
inline std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string s = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  const std::string header = dict + "\n";
  s += major == 1 ? le(static_cast<uint16_t>(header.size())) : le(static_cast<uint32_t>(header.size()));
  return s + header + data;
}

/// A safetensors file with the given header JSON text and data bytes.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le(static_cast<uint64_t>(header.size())) + header + data;
}

}  // namespace xntk::test
