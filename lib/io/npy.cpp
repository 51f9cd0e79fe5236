// NumPy .npy (format versions 1.0, 2.0 and 3.0): a magic string, a version, a header length, a Python
// dict literal {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}, then the raw data.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>
#include <type_traits>
#include <variant>

#include "io/file.hpp"
#include "io/headers.hpp"
#include "quote.hpp"
#include "xntk/io.hpp"

namespace xntk {
namespace {

using detail::little_endian;

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// Limits of what a header may say: NumPy's largest rank (NPY_MAXDIMS of NumPy 2), and a nesting depth of
// tuples and lists far above the 2 levels a structured dtype needs (the parser recurses once per level).
constexpr size_t kMaxRank = 64;
constexpr int kMaxDepth = 16;

// ---- the header's Python literal: strings, booleans, None, integers and tuples/lists of them ----

struct PyValue;
using PyList = std::vector<PyValue>;
struct PyNone {};
struct PyValue {
  std::variant<PyNone, bool, int64_t, std::string, PyList> v;
};

class LiteralParser {
 public:
  LiteralParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  /// The dict's (key, value) pairs in order.
  std::vector<std::pair<std::string, PyValue>> dict() {
    expect('{');
    std::vector<std::pair<std::string, PyValue>> items;
    while (!peek('}')) {
      PyValue key = value();
      if (!std::holds_alternative<std::string>(key.v)) fail("a string key");
      expect(':');
      items.emplace_back(std::get<std::string>(key.v), value());
      if (!peek('}')) expect(',');
    }
    expect('}');
    skip();
    if (i_ != s_.size()) fail("the end of the header after '}'");
    return items;
  }

 private:
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool peek(char c) {
    skip();
    return i_ < s_.size() && s_[i_] == c;
  }
  void expect(char c) {
    if (!peek(c)) fail(std::string("'") + c + "'");
    ++i_;
  }
  [[noreturn]] void fail(const std::string& expected) {
    // what follows the error, cut short: the header may be megabytes
    std::string_view rest(s_);
    rest.remove_prefix(std::min(i_, rest.size()));
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.back()))) rest.remove_suffix(1);
    throw Error(path_ + ": malformed .npy header at character " + std::to_string(i_) + ": expected " + expected +
                (rest.empty() ? " at its end" : " before " + detail::quote(rest)));
  }
  PyValue value(int depth = 0) {
    skip();
    if (i_ >= s_.size()) fail("a value");
    const char c = s_[i_];
    if (c == '\'' || c == '"') {
      const size_t end = s_.find(c, i_ + 1);
      if (end == std::string::npos) fail("a closing quote");
      PyValue r{s_.substr(i_ + 1, end - i_ - 1)};
      i_ = end + 1;
      return r;
    }
    if (c == '(' || c == '[') {
      if (depth >= kMaxDepth) fail("at most " + std::to_string(kMaxDepth) + " levels of nested tuples and lists");
      const char close = c == '(' ? ')' : ']';
      ++i_;
      PyList items;
      while (!peek(close)) {
        items.push_back(value(depth + 1));
        if (!peek(close)) expect(',');
      }
      ++i_;
      return PyValue{std::move(items)};
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      size_t end = i_ + 1;
      while (end < s_.size() && std::isdigit(static_cast<unsigned char>(s_[end]))) ++end;
      const std::string digits = s_.substr(i_, end - i_);
      if (end < s_.size() && s_[end] == 'L') ++end;  // Python 2's long integers, as old NumPy wrote them
      i_ = end;
      try {
        return PyValue{static_cast<int64_t>(std::stoll(digits))};
      } catch (const std::exception&) {
        fail("an integer that fits in 64 bits");
      }
    }
    for (const auto& [word, v] : {std::pair<const char*, PyValue>{"True", PyValue{true}},
                                  {"False", PyValue{false}},
                                  {"None", PyValue{PyNone{}}}}) {
      if (s_.compare(i_, std::strlen(word), word) == 0) {
        i_ += std::strlen(word);
        return v;
      }
    }
    fail("a string, integer, True, False, None or tuple");
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

/// A readable name for a NumPy type string such as '<i8'.
std::string describe_descr(const std::string& d) {
  const std::string quoted = detail::quote(d, 16, '\'');
  if (d.size() < 2) return quoted;
  const char kind = d[1];
  const std::string bytes = d.substr(2);
  // item sizes NumPy has (up to 16 bytes, and strings of any length); others read as 0 bits
  int bits = 0;
  if (!bytes.empty() && bytes.size() <= 2 &&
      std::all_of(bytes.begin(), bytes.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    bits = 8 * std::stoi(bytes);
  std::string what;
  switch (bits == 0 && std::string_view("fiuc").find(kind) != std::string_view::npos ? '?' : kind) {
    case 'f': what = "float" + std::to_string(bits); break;
    case 'i': what = "int" + std::to_string(bits); break;
    case 'u': what = "uint" + std::to_string(bits); break;
    case 'c': what = "complex" + std::to_string(bits); break;
    case 'b': what = "bool"; break;
    case 'O': what = "Python objects"; break;
    case 'U': what = "unicode strings"; break;
    case 'S': what = "byte strings"; break;
    default: what = "an unsupported type";
  }
  return quoted + " (" + what + ")";
}

struct NpyHeader {
  int itemsize = 0;      // 4 or 8 (1, 2, 4 or 8 for integers)
  char kind = 'f';       // 'f' float, 'i' signed or 'u' unsigned integer (labels only)
  bool swap = false;     // data in the other byte order than the host's
  bool fortran = false;  // column-major
  Shape shape;
};

NpyHeader parse_header(const std::string& text, const std::string& path, bool integers) {
  const auto items = LiteralParser(text, path).dict();
  NpyHeader h;
  bool has_descr = false, has_order = false, has_shape = false;
  for (const auto& [key, value] : items) {
    // NumPy's own parser (ast.literal_eval) keeps the last of two equal keys; which one was meant is unknowable
    if ((key == "descr" && has_descr) || (key == "fortran_order" && has_order) || (key == "shape" && has_shape))
      throw Error(path + ": the .npy header has the key '" + key + "' twice; expected it once");
    if (key == "descr") {
      has_descr = true;
      if (!std::holds_alternative<std::string>(value.v))
        throw Error(path + ": dtype is a structured (record) type; expected float32 ('<f4') or float64 ('<f8')");
      const std::string& d = std::get<std::string>(value.v);
      const bool order = d.size() == 3 && (d[0] == '<' || d[0] == '>' || d[0] == '=' || d[0] == '|');
      const bool known =
          order &&
          ((d[1] == 'f' && (d[2] == '4' || d[2] == '8')) ||
           (integers && (d[1] == 'i' || d[1] == 'u') && (d[2] == '1' || d[2] == '2' || d[2] == '4' || d[2] == '8')));
      if (!known)
        throw Error(path + ": dtype " + describe_descr(d) + "; expected float32 ('<f4') or float64 ('<f8')" +
                    (integers ? " or integer labels ('<i8', '<i4', …)" : ""));
      h.itemsize = d[2] - '0';
      h.kind = d[1];
      const bool little = d[0] == '<' || ((d[0] == '=' || d[0] == '|') && std::endian::native == std::endian::little);
      h.swap = little != (std::endian::native == std::endian::little);
    } else if (key == "fortran_order") {
      has_order = true;
      if (!std::holds_alternative<bool>(value.v)) throw Error(path + ": 'fortran_order' must be True or False");
      h.fortran = std::get<bool>(value.v);
    } else if (key == "shape") {
      has_shape = true;
      if (!std::holds_alternative<PyList>(value.v)) throw Error(path + ": 'shape' must be a tuple of integers");
      if (std::get<PyList>(value.v).size() > kMaxRank)
        throw Error(path + ": 'shape' has " + std::to_string(std::get<PyList>(value.v).size()) +
                    " dimensions; expected at most " + std::to_string(kMaxRank));
      for (const PyValue& d : std::get<PyList>(value.v)) {
        if (!std::holds_alternative<int64_t>(d.v) || std::get<int64_t>(d.v) < 0)
          throw Error(path + ": 'shape' must be a tuple of non-negative integers");
        h.shape.push_back(std::get<int64_t>(d.v));
      }
    } else {
      throw Error(path + ": unexpected key " + detail::quote(key, detail::kQuoteBytes, '\'') +
                  " in the .npy header; expected 'descr', 'fortran_order', 'shape'");
    }
  }
  if (!has_descr || !has_order || !has_shape)
    throw Error(path + ": the .npy header lacks '" +
                std::string(!has_descr   ? "descr"
                            : !has_order ? "fortran_order"
                                         : "shape") +
                "'");
  return h;
}

/// Number of elements, or xntk::Error if it overflows the bytes a file can hold.
uint64_t checked_numel(const Shape& shape, const std::string& path) {
  uint64_t n = 1;
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / 16;
  for (int64_t d : shape) {
    if (d != 0 && n > limit / static_cast<uint64_t>(d))
      throw Error(path + ": shape " + to_string(shape) + " is too large");
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

/// Column-major data of `shape` into row-major order.
template <class T>
std::vector<T> from_fortran(const std::vector<T>& src, const Shape& shape) {
  const size_t rank = shape.size();
  std::vector<T> dst(src.size());
  if (src.empty()) return dst;
  std::vector<int64_t> stride(rank, 1), idx(rank, 0);  // column-major strides of the source
  for (size_t j = 1; j < rank; ++j) stride[j] = stride[j - 1] * shape[j - 1];
  int64_t offset = 0;
  for (size_t out = 0; out < dst.size(); ++out) {
    dst[out] = src[static_cast<size_t>(offset)];
    // row-major odometer: the last index runs fastest
    for (size_t j = rank; j-- > 0;) {
      if (++idx[j] < shape[j]) {
        offset += stride[j];
        break;
      }
      offset -= stride[j] * (shape[j] - 1);
      idx[j] = 0;
    }
  }
  return dst;
}

/// Opens a .npy file and validates its header against the file's size, leaving `f` at the data.
NpyHeader open_npy(detail::InputFile& f, bool integers = false) {
  const std::string& path = f.path();
  char magic[kMagicSize];
  if (f.size() < kMagicSize + 4) throw Error(path + ": not a .npy file (too short for the .npy preamble)");
  f.read(magic, kMagicSize, "the magic string");
  if (std::memcmp(magic, kMagic, kMagicSize) != 0)
    throw Error(path + ": not a .npy file (the magic string \\x93NUMPY is missing)");
  unsigned char version[2];
  f.read(version, 2, "the format version");
  uint64_t header_len = 0;
  if (version[0] == 1 && version[1] == 0) {
    uint16_t n;
    f.read(&n, 2, "the header length");
    header_len = little_endian(n);
  } else if ((version[0] == 2 || version[0] == 3) && version[1] == 0) {
    uint32_t n;
    f.read(&n, 4, "the header length");
    header_len = little_endian(n);
  } else {
    throw Error(path + ": .npy format version " + std::to_string(version[0]) + "." + std::to_string(version[1]) +
                " is not supported; expected 1.0, 2.0 or 3.0");
  }
  if (header_len > f.size() - f.position())
    throw Error(path + ": truncated: the header length is " + std::to_string(header_len) + " bytes but only " +
                std::to_string(f.size() - f.position()) + " bytes follow");
  std::string text(header_len, '\0');
  f.read(text.data(), header_len, "the header");
  NpyHeader h = parse_header(text, path, integers);

  const uint64_t count = checked_numel(h.shape, path);
  const uint64_t need = count * static_cast<uint64_t>(h.itemsize), have = f.size() - f.position();
  const std::string dtype = h.kind == 'f' ? (h.itemsize == 4 ? "float32" : "float64")
                                          : (h.kind == 'i' ? "int" : "uint") + std::to_string(8 * h.itemsize);
  if (need > have)
    throw Error(path + ": truncated: shape " + to_string(h.shape) + " of " + dtype + " needs " + std::to_string(need) +
                " bytes of data but the file holds " + std::to_string(have));
  if (need < have)
    throw Error(path + ": " + std::to_string(have - need) + " unexpected bytes after the data of shape " +
                to_string(h.shape) + " of " + dtype);
  return h;
}

}  // namespace

namespace detail {

std::string npy_header(const Shape& shape, int itemsize) {
  std::string dict =
      std::string("{'descr': '<f") + (itemsize == 4 ? "4" : "8") + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  dict += shape.size() == 1 ? ",), }" : "), }";
  // NumPy pads the header with spaces and a newline so that the data starts at a multiple of 64 bytes.
  const bool v2 = dict.size() + 1 + kMagicSize + 4 > 65535;
  const size_t preamble = kMagicSize + 2 + (v2 ? 4 : 2);
  const size_t total = (preamble + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - preamble - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(kMagic, kMagicSize);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  if (v2) {
    const uint32_t n = little_endian(static_cast<uint32_t>(dict.size()));
    out.append(reinterpret_cast<const char*>(&n), 4);
  } else {
    const uint16_t n = little_endian(static_cast<uint16_t>(dict.size()));
    out.append(reinterpret_cast<const char*>(&n), 2);
  }
  return out + dict;
}

}  // namespace detail

NpyInfo read_npy_info(const std::string& path) {
  detail::InputFile f(path);
  const NpyHeader h = open_npy(f);
  return {h.shape, h.itemsize, h.fortran, h.swap, f.position()};
}

namespace {

/// The float data after the header h, in C order.
template <class T>
Tensor<T> read_floats(detail::InputFile& f, const NpyHeader& h) {
  const uint64_t count = static_cast<uint64_t>(numel(h.shape));
  std::vector<T> data(static_cast<size_t>(count));
  detail::read_values(f, data.data(), count, h.itemsize, h.swap, "the data");
  if (h.fortran && h.shape.size() > 1) data = from_fortran(data, h.shape);
  return Tensor<T>(h.shape, std::move(data));
}

}  // namespace

template <class T>
Tensor<T> read_npy(const std::string& path) {
  detail::InputFile f(path);
  return read_floats<T>(f, open_npy(f));
}

template <class T>
Tensor<T> read_npy_labels(const std::string& path) {
  detail::InputFile f(path);
  const NpyHeader h = open_npy(f, true);
  if (h.kind == 'f') return read_floats<T>(f, h);
  // integers, converted exactly: at most 2^24 (float) or 2^53 (double) in magnitude
  const uint64_t count = static_cast<uint64_t>(numel(h.shape)), size = static_cast<uint64_t>(h.itemsize);
  const double limit = sizeof(T) == 4 ? 16777216.0 : 9007199254740992.0;
  std::vector<T> data(static_cast<size_t>(count));
  std::vector<unsigned char> buf(static_cast<size_t>(std::min<uint64_t>(count, 1 << 16) * size));
  for (uint64_t done = 0; done < count;) {
    const uint64_t k = std::min<uint64_t>(1 << 16, count - done);
    f.read(buf.data(), k * size, "the data");
    for (uint64_t e = 0; e < k; ++e) {
      unsigned char b[8];
      std::memcpy(b, buf.data() + e * size, size);
      if (h.swap) std::reverse(b, b + size);
      // the host's order now: widen with the sign of the kind
      uint64_t u = 0;
      if constexpr (std::endian::native == std::endian::little)
        std::memcpy(&u, b, size);
      else
        for (uint64_t q = 0; q < size; ++q) u |= static_cast<uint64_t>(b[size - 1 - q]) << (8 * q);
      double v;
      if (h.kind == 'i') {
        const uint64_t sign = uint64_t{1} << (8 * size - 1);
        if (size < 8 && (u & sign)) u |= ~((sign << 1) - 1);
        v = static_cast<double>(static_cast<int64_t>(u));
      } else {
        v = static_cast<double>(u);
      }
      if (std::abs(v) > limit)
        throw Error(path + ": value at flat index " + std::to_string(done + e) + " is too large for " +
                    (sizeof(T) == 4 ? "float32" : "float64") + "; expected class labels");
      data[static_cast<size_t>(done + e)] = static_cast<T>(v);
    }
    done += k;
  }
  if (h.fortran && h.shape.size() > 1) data = from_fortran(data, h.shape);
  return Tensor<T>(h.shape, std::move(data));
}

template <class T>
void write_npy(std::ostream& out, const Tensor<T>& t) {
  const std::string header = detail::npy_header(t.shape(), sizeof(T));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  if constexpr (std::endian::native == std::endian::little) {
    out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.size() * sizeof(T)));
  } else {
    for (int64_t i = 0; i < t.size(); ++i) {
      const T v = detail::byteswap(t[i]);
      out.write(reinterpret_cast<const char*>(&v), sizeof(T));
    }
  }
}

template <class T>
void write_npy(const std::string& path, const Tensor<T>& t) {
  detail::AtomicFile f(path);
  write_npy(f.stream(), t);
  f.commit();
}

template Tensor<float> read_npy(const std::string&);
template Tensor<float> read_npy_labels(const std::string&);
template Tensor<double> read_npy_labels(const std::string&);
template Tensor<double> read_npy(const std::string&);
template void write_npy(std::ostream&, const Tensor<float>&);
template void write_npy(std::ostream&, const Tensor<double>&);
template void write_npy(const std::string&, const Tensor<float>&);
template void write_npy(const std::string&, const Tensor<double>&);

}  // namespace xntk
