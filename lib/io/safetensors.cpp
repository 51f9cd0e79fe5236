// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}, then the
// data buffer that the offsets index. Validation follows the reference implementation: offsets must tile
// the buffer exactly, in some order, with no gap, overlap or trailing byte.

#include "io/safetensors.hpp"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>

#include "io/file.hpp"
#include "io/headers.hpp"
#include "io/json.hpp"
#include "quote.hpp"
#include "xntk/io.hpp"

namespace xntk {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// The reference implementation refuses headers over 100 MB; so do we, before allocating one.
constexpr uint64_t kMaxHeader = 100'000'000;
// NumPy's largest rank (NPY_MAXDIMS of NumPy 2); PyTorch's is lower.
constexpr size_t kMaxRank = 64;

/// Bytes per element of the safetensors dtypes (0: unknown dtype).
int dtype_size(const std::string& d) {
  static const std::pair<const char*, int> table[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  for (const auto& [name, size] : table)
    if (d == name) return size;
  return 0;
}

struct Entry {
  std::string name;
  int itemsize = 0;
  bool integer = false;  // I64 (BatchNorm's num_batches_tracked), converted
  Shape shape;
  uint64_t begin = 0, end = 0;
};

/// A non-negative integer field of the header, or xntk::Error naming the tensor.
uint64_t header_uint(const json& v, const std::string& where) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    throw Error(where + ": expected a non-negative integer, got " + detail::excerpt(v));
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& path, const std::string& name, const json& e, uint64_t buffer) {
  // a name no writer (and no state_dict) gives: xntk's own writer could not write the file back
  if (name.empty()) throw Error(path + ": a tensor has an empty name; expected a name such as \"0.weight\"");
  const std::string where = path + ": tensor " + detail::quote(name);
  if (!e.is_object()) throw Error(where + ": expected an object with dtype, shape and data_offsets");
  for (const auto& [key, _] : e.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(where + ": unexpected field " + detail::quote(key) + "; expected dtype, shape and data_offsets");
  if (!e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    throw Error(where + ": missing field \"" +
                std::string(!e.contains("dtype")   ? "dtype"
                            : !e.contains("shape") ? "shape"
                                                   : "data_offsets") +
                "\"");
  Entry r;
  r.name = name;
  if (!e["dtype"].is_string()) throw Error(where + ": dtype must be a string such as \"F32\"");
  const std::string dtype = e["dtype"].get<std::string>();
  r.itemsize = dtype_size(dtype);
  if (r.itemsize == 0) throw Error(where + ": unknown dtype " + detail::quote(dtype) + "; expected F32, F64 or I64");
  if (dtype != "F32" && dtype != "F64" && dtype != "I64")
    throw Error(where + ": dtype " + dtype + " is not supported; expected F32, F64 or I64");
  r.integer = dtype == "I64";
  if (!e["shape"].is_array()) throw Error(where + ": shape must be an array of non-negative integers");
  if (e["shape"].size() > kMaxRank)
    throw Error(where + ": shape has " + std::to_string(e["shape"].size()) + " dimensions; expected at most " +
                std::to_string(kMaxRank));
  uint64_t count = 1;
  for (const auto& d : e["shape"]) {
    const uint64_t n = header_uint(d, where + ": shape");
    if (n != 0 && count > (std::numeric_limits<uint64_t>::max() / 16) / n) throw Error(where + ": shape is too large");
    count *= n;
    r.shape.push_back(static_cast<int64_t>(n));
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2) throw Error(where + ": data_offsets must be [begin, end]");
  r.begin = header_uint(off[0], where + ": data_offsets");
  r.end = header_uint(off[1], where + ": data_offsets");
  if (r.begin > r.end)
    throw Error(where + ": data_offsets [" + std::to_string(r.begin) + ", " + std::to_string(r.end) +
                "] end before they begin");
  if (r.end > buffer)
    throw Error(where + ": data_offsets end at byte " + std::to_string(r.end) + " but the data buffer has " +
                std::to_string(buffer) + " bytes (truncated file?)");
  if (r.end - r.begin != count * static_cast<uint64_t>(r.itemsize))
    throw Error(where + ": shape " + to_string(r.shape) + " of " + dtype + " needs " +
                std::to_string(count * static_cast<uint64_t>(r.itemsize)) + " bytes but data_offsets span " +
                std::to_string(r.end - r.begin));
  return r;
}

}  // namespace

template <class T>
std::vector<NamedTensor<T>> read_tensors(const std::string& path, std::map<std::string, std::string>* metadata,
                                         std::vector<bool>* integer) {
  detail::InputFile f(path);
  if (f.size() < 8) throw Error(path + ": not a safetensors file (shorter than its 8-byte header length)");
  uint64_t n;
  f.read(&n, 8, "the header length");
  n = detail::little_endian(n);
  if (n > f.size() - 8)
    throw Error(path + ": header length " + std::to_string(n) + " exceeds the " + std::to_string(f.size() - 8) +
                " bytes that follow it (not a safetensors file, or truncated)");
  if (n > kMaxHeader) throw Error(path + ": header length " + std::to_string(n) + " exceeds the 100 MB limit");
  std::string text(n, '\0');
  f.read(text.data(), n, "the header");
  if (text.empty() || text[0] != '{')
    throw Error(path + ": the safetensors header must be a JSON object starting with '{'");
  const json header = detail::parse_json(text, path + ": the safetensors header");
  if (!header.is_object()) throw Error(path + ": the safetensors header must be a JSON object");

  const uint64_t buffer = f.size() - 8 - n;
  std::vector<Entry> entries;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) throw Error(path + ": __metadata__ must be an object of strings");
      for (const auto& [k, v] : e.items()) {
        if (!v.is_string()) throw Error(path + ": __metadata__ " + detail::quote(k) + " must be a string");
        if (metadata) (*metadata)[k] = v.template get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, e, buffer));
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t at = 0;
  for (const Entry& e : entries) {
    if (e.begin != at)
      throw Error(path + ": tensor " + detail::quote(e.name) + " starts at byte " + std::to_string(e.begin) +
                  " of the data but " + (e.begin < at ? "the previous tensor ends at " : "the previous data ends at ") +
                  std::to_string(at) + (e.begin < at ? " (overlapping tensors)" : " (a gap)"));
    at = e.end;
  }
  if (at != buffer)
    throw Error(path + ": " + std::to_string(buffer - at) + " bytes of data after the last tensor (offsets end at " +
                std::to_string(at) + ", the data buffer has " + std::to_string(buffer) + " bytes)");

  std::vector<NamedTensor<T>> result;
  result.reserve(entries.size());
  for (const Entry& e : entries) {
    std::vector<T> data(static_cast<size_t>(numel(e.shape)));
    // safetensors data is little-endian
    detail::read_values(f, data.data(), data.size(), e.itemsize, std::endian::native != std::endian::little,
                        "tensor " + detail::quote(e.name), e.integer);
    result.push_back({e.name, Tensor<T>(e.shape, std::move(data))});
    if (integer) integer->push_back(e.integer);
  }
  return result;
}

template <class T>
std::vector<NamedTensor<T>> read_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  return read_tensors<T>(path, metadata, nullptr);
}

namespace detail {

template <class T>
std::vector<NamedTensor<T>> read_safetensors_typed(const std::string& path, std::vector<bool>& integer) {
  integer.clear();
  return read_tensors<T>(path, nullptr, &integer);
}

template std::vector<NamedTensor<float>> read_safetensors_typed(const std::string&, std::vector<bool>&);
template std::vector<NamedTensor<double>> read_safetensors_typed(const std::string&, std::vector<bool>&);

std::string safetensors_header(const std::vector<std::pair<std::string, Shape>>& tensors, int itemsize,
                               const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t at = 0;
  for (const auto& [name, shape] : tensors) {
    if (name.empty() || name == "__metadata__") throw Error("safetensors: invalid tensor name " + detail::quote(name));
    if (!seen.insert(name).second) throw Error("safetensors: duplicate tensor name " + detail::quote(name));
    const uint64_t bytes = static_cast<uint64_t>(numel(shape)) * static_cast<uint64_t>(itemsize);
    header[name] = {{"dtype", itemsize == 4 ? "F32" : "F64"}, {"shape", shape}, {"data_offsets", {at, at + bytes}}};
    at += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces (allowed by the format) so that the data starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = detail::little_endian(static_cast<uint64_t>(text.size()));
  return std::string(reinterpret_cast<const char*>(&n), 8) + text;
}

}  // namespace detail

template <class T>
void write_safetensors(std::ostream& out, const std::vector<NamedTensor<T>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Shape>> entries;
  entries.reserve(tensors.size());
  for (const auto& t : tensors) entries.emplace_back(t.name, t.tensor.shape());
  const std::string header = detail::safetensors_header(entries, sizeof(T), metadata);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& t : tensors) {
    if constexpr (std::endian::native == std::endian::little) {
      out.write(reinterpret_cast<const char*>(t.tensor.data()),
                static_cast<std::streamsize>(t.tensor.size() * static_cast<int64_t>(sizeof(T))));
    } else {
      for (int64_t i = 0; i < t.tensor.size(); ++i) {
        const T v = detail::byteswap(t.tensor[i]);
        out.write(reinterpret_cast<const char*>(&v), sizeof(T));
      }
    }
  }
}

template <class T>
void write_safetensors(const std::string& path, const std::vector<NamedTensor<T>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  detail::AtomicFile f(path);
  try {
    write_safetensors(f.stream(), tensors, metadata);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  f.commit();
}

#define XNTK_INSTANTIATE(T)                                                                                       \
  template std::vector<NamedTensor<T>> read_safetensors(const std::string&, std::map<std::string, std::string>*); \
  template void write_safetensors(std::ostream&, const std::vector<NamedTensor<T>>&,                              \
                                  const std::map<std::string, std::string>&);                                     \
  template void write_safetensors(const std::string&, const std::vector<NamedTensor<T>>&,                         \
                                  const std::map<std::string, std::string>&);
XNTK_INSTANTIATE(float)
XNTK_INSTANTIATE(double)
#undef XNTK_INSTANTIATE

}  // namespace xntk
