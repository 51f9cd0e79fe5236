#include "xntk/tensor.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>

#include "checked.hpp"
#include "ntk/plan.hpp"

namespace xntk {

namespace engine {

namespace {

/// The first number in a file (0 and false if absent or not a number; "max" is +infinity).
bool read_number(const std::string& path, double& v) {
  std::ifstream f(path);
  std::string word;
  if (!(f >> word)) return false;
  if (word == "max") {
    v = std::numeric_limits<double>::infinity();
    return true;
  }
  char* end = nullptr;
  v = std::strtod(word.c_str(), &end);
  return end != word.c_str() && *end == '\0' && v >= 0;
}

/// A field of memory.stat ("inactive_file 1234"), 0 if absent.
double stat_field(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string k;
  double v;
  while (f >> k >> v)
    if (k == key) return v;
  return 0;
}

}  // namespace

double cgroup_available_bytes(const std::string& root, const std::string& self_cgroup) {
  double best = std::numeric_limits<double>::infinity();
  std::istringstream lines(self_cgroup);
  std::string line;
  while (std::getline(lines, line)) {
    // "hierarchy-ID:controllers:path": v2 is "0::/path", v1's memory controller "N:memory:/path"
    const auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    const bool v2 = line.compare(0, a, "0") == 0 && controllers.empty();
    bool v1 = false;
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) v1 = v1 || name == "memory";
    if (!v2 && !v1) continue;
    // the limit of the process's group and of each group above it: the tightest one binds
    std::string dir = path;
    while (true) {
      const std::string base = v2 ? root + dir : root + "/memory" + dir;
      double limit, used;
      const bool have = v2 ? read_number(base + "/memory.max", limit) && read_number(base + "/memory.current", used)
                           : read_number(base + "/memory.limit_in_bytes", limit) &&
                                 read_number(base + "/memory.usage_in_bytes", used);
      // v1 writes "no limit" as a number near 2^63
      if (have && limit < 0x1p62) {
        // page cache the kernel would reclaim counts as available, as in MemAvailable
        const double reclaimable = stat_field(base + "/memory.stat", v2 ? "inactive_file" : "total_inactive_file");
        best = std::min(best, std::max(0.0, limit - used + std::min(reclaimable, used)));
      }
      if (dir.empty() || dir == "/") break;
      const auto slash = dir.find_last_of('/');
      dir = slash == 0 || slash == std::string::npos ? "/" : dir.substr(0, slash);
    }
  }
  return best;
}

namespace {

double read_available_bytes() {
  double avail = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  {
    std::ifstream f("/proc/meminfo");
    std::string key, unit;
    double kb = 0;
    while (f >> key >> kb >> unit)
      if (key == "MemAvailable:") {
        avail = kb * 1024.0;
        break;
      }
  }
  std::ifstream self("/proc/self/cgroup");
  std::stringstream text;
  text << self.rdbuf();
  return std::min(avail, cgroup_available_bytes("/sys/fs/cgroup", text.str()));
}

}  // namespace

double available_bytes() {
  // Read at most every 50 ms: one kernel call asks two or three times (its plan, its sink, large tensors), and
  // each reading is ~20 system calls (/proc/meminfo, /proc/self/cgroup and the cgroups' files), 1% of the
  // 11 ms nt_fcn2048_16 kernel. Memory does not change much faster than that.
  static std::mutex mutex;
  static std::chrono::steady_clock::time_point read_at;
  static double value = 0;
  const std::lock_guard lock(mutex);
  const auto now = std::chrono::steady_clock::now();
  if (value <= 0 || now - read_at > std::chrono::milliseconds(50)) {
    value = read_available_bytes();
    read_at = now;
  }
  return value;
}

}  // namespace engine

namespace {

std::atomic<double> tensor_byte_limit{0};

/// TooLarge if `count` values of `size` bytes exceed the limit (see set_tensor_byte_limit).
void check_tensor_bytes(const Shape& shape, int64_t count, size_t size) {
  const double bytes = static_cast<double>(count) * static_cast<double>(size), limit = tensor_byte_limit.load();
  if (limit > 0 ? bytes <= limit : bytes < 256.0 * (1 << 20)) return;
  const double avail = limit > 0 ? limit : 0.9 * engine::available_bytes();
  if (bytes <= avail) return;
  std::ostringstream s;
  s.precision(3);
  s << "a tensor of shape " << to_string(shape) << " needs " << bytes / 1e9 << " GB, more than the " << avail / 1e9
    << " GB of memory " << (limit > 0 ? "allowed" : "available");
  throw detail::TooLarge(s.str());
}

}  // namespace

void detail::set_tensor_byte_limit(double bytes) { tensor_byte_limit.store(bytes); }

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    int64_t r;
    if (__builtin_mul_overflow(n, d, &r))
      throw Error("the number of elements of shape " + to_string(shape) + " overflows 64-bit integers");
    n = r;
  }
  return n;
}

std::string to_string(const Shape& shape) {
  // shapes come from files: a message about a rank-10000 shape stays one short line
  constexpr size_t kShown = 8, kMaxFull = 16;
  std::ostringstream s;
  s << '(';
  if (shape.size() <= kMaxFull) {
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    if (shape.size() == 1) s << ',';
  } else {
    for (size_t i = 0; i < kShown; ++i) s << shape[i] << ", ";
    s << "..., " << shape.back() << "; " << shape.size() << " dimensions";
  }
  s << ')';
  return s.str();
}

template <class T>
Tensor<T>::Tensor(Shape shape, T fill) : shape_(std::move(shape)) {
  for (int64_t d : shape_)
    if (d < 0) throw Error("Tensor: negative dimension in shape " + to_string(shape_));
  const int64_t count = numel(shape_);
  check_tensor_bytes(shape_, count, sizeof(T));
  data_.assign(static_cast<size_t>(count), fill);
}

template <class T>
Tensor<T>::Tensor(Shape shape, std::vector<T> data) : shape_(std::move(shape)), data_(std::move(data)) {
  for (int64_t d : shape_)
    if (d < 0) throw Error("Tensor: negative dimension in shape " + to_string(shape_));
  if (numel(shape_) != static_cast<int64_t>(data_.size()))
    throw Error("Tensor: shape " + to_string(shape_) + " needs " + std::to_string(numel(shape_)) + " values, got " +
                std::to_string(data_.size()));
}

template <class T>
Tensor<T> Tensor<T>::reshaped(Shape shape) const {
  if (numel(shape) != size())
    throw Error("Tensor::reshaped: cannot view " + to_string(shape_) + " as " + to_string(shape));
  return Tensor(std::move(shape), data_);
}

template <class T>
int64_t Tensor<T>::offset(std::initializer_list<int64_t> idx) const {
  if (idx.size() != shape_.size())
    throw Error("Tensor: " + std::to_string(idx.size()) + " indices for a tensor of rank " +
                std::to_string(shape_.size()));
  int64_t off = 0;
  size_t k = 0;
  for (int64_t i : idx) {
    if (i < 0 || i >= shape_[k])
      throw Error("Tensor: index " + std::to_string(i) + " out of range for axis " + std::to_string(k) + " of shape " +
                  to_string(shape_));
    off = off * shape_[k++] + i;
  }
  return off;
}

template class Tensor<float>;
template class Tensor<double>;

}  // namespace xntk
