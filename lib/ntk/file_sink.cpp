// The file sink: the kernel's blocks written at their offsets in a .npy and, with components, a safetensors
// file, both preallocated under temporary names and renamed onto their paths by commit(). Holds one block
// (and its transpose) at a time. The components' metadata carries the kernel's checksum, accumulated over
// the blocks as they come (it does not depend on their order) and written into the header at the end.

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>
#include <optional>

#include "checked.hpp"
#include "io/checksum.hpp"
#include "io/file.hpp"
#include "io/headers.hpp"
#include "ntk/memory_sink.hpp"
#include "xntk/sink.hpp"

namespace xntk {

template <class T>
struct FileSink<T>::Files {
  std::string kernel_path, components_path;
  std::map<std::string, std::string> metadata;
  std::optional<detail::AtomicFile> kernel, components;
  KernelLayout layout;
  uint64_t kernel_data = 0;      // the npy's data offset
  uint64_t components_data = 0;  // the safetensors' data offset
  uint64_t tensor_bytes = 0;     // bytes of one tensor (the kernel or a component)
  uint64_t checksum = 0;         // the total's, over the values written so far
  int64_t written = 0;           // values of the total written so far
  std::string components_header;
  std::vector<T> square, transposed;
  std::vector<unsigned char> bytes;
  bool begun = false, ended = false, committed = false;

  std::string header(uint64_t h) const {
    std::vector<std::pair<std::string, Shape>> entries;
    for (const auto& name : layout.components) entries.emplace_back(name, layout.shape);
    entries.emplace_back("total", layout.shape);
    auto meta = metadata;
    meta["kernel_checksum"] = detail::format_checksum(h);
    return detail::safetensors_header(entries, sizeof(T), meta);
  }

  /// n values at byte `offset` of `file`, little-endian.
  void write(detail::AtomicFile& file, uint64_t offset, const T* v, int64_t n) {
    if constexpr (std::endian::native == std::endian::little) {
      file.write_at(offset, v, static_cast<uint64_t>(n) * sizeof(T));
    } else {
      bytes.resize(static_cast<size_t>(n) * sizeof(T));
      for (int64_t i = 0; i < n; ++i) {
        const T s = detail::byteswap(v[i]);
        std::memcpy(bytes.data() + i * sizeof(T), &s, sizeof(T));
      }
      file.write_at(offset, bytes.data(), bytes.size());
    }
  }

  /// Rows [r0, r0 + rows) by columns [c0, c0 + cols) of slot `slot`, from src (rows, cols, per).
  void write_rows(int slot, int64_t r0, int64_t c0, int64_t rows, int64_t cols, const T* src) {
    const int64_t per = layout.per_pair(), row = cols * per;
    for (int64_t r = 0; r < rows; ++r) {
      const T* v = src + r * row;
      const int64_t first = ((r0 + r) * layout.m + c0) * per;  // the row's first value, in C order
      const uint64_t at = static_cast<uint64_t>(first) * sizeof(T);
      if (slot == 0) {
        write(*kernel, kernel_data + at, v, row);
        for (int64_t e = 0; e < row; ++e)
          checksum += detail::checksum_term(static_cast<uint64_t>(first + e), detail::stored_bits(v[e], sizeof(T)));
        written += row;
      }
      if (components) {
        const uint64_t tensor = slot == 0 ? layout.components.size() : static_cast<uint64_t>(slot - 1);
        write(*components, components_data + tensor * tensor_bytes + at, v, row);
      }
    }
  }
};

template <class T>
FileSink<T>::FileSink(std::string kernel_path, std::string components_path,
                      std::vector<std::pair<std::string, std::string>> metadata)
    : files_(std::make_unique<Files>()) {
  files_->kernel_path = std::move(kernel_path);
  files_->components_path = std::move(components_path);
  for (auto& [key, value] : metadata) {
    if (key == "kernel_checksum") throw Error("file sink: metadata key \"kernel_checksum\" is the sink's own");
    files_->metadata[key] = std::move(value);
  }
  if (!files_->components_path.empty() && !detail::is_null_device(files_->kernel_path) &&
      detail::same_output_file(files_->kernel_path, files_->components_path))
    throw Error(files_->components_path + ": the components would overwrite the kernel " + files_->kernel_path +
                "; expected another file");
  // created now: an unwritable destination fails before any computation
  files_->kernel.emplace(files_->kernel_path);
  if (!files_->components_path.empty()) files_->components.emplace(files_->components_path);
}

template <class T>
FileSink<T>::~FileSink() = default;

template <class T>
void FileSink<T>::begin(const KernelLayout& layout) {
  Files& f = *files_;
  if (f.begun) throw Error(f.kernel_path + ": the file sink has already received a kernel");
  f.begun = true;
  if (f.components && layout.components.empty())
    throw Error(f.components_path + ": components were not requested; set KernelOptions::components");
  f.layout = layout;
  const int64_t values = numel(layout.shape);
  f.tensor_bytes = static_cast<uint64_t>(detail::checked_mul(values, int64_t{sizeof(T)}, "kernel size in bytes"));
  const std::string npy = detail::npy_header(layout.shape, sizeof(T));
  f.kernel_data = npy.size();
  f.kernel->write_at(0, npy.data(), npy.size());
  f.kernel->preallocate(f.kernel_data + f.tensor_bytes);
  if (f.components) {
    f.components_header = f.header(0);
    f.components_data = f.components_header.size();
    const uint64_t tensors = layout.components.size() + 1;
    f.components->write_at(0, f.components_header.data(), f.components_header.size());
    const int64_t all = detail::checked_mul(static_cast<int64_t>(f.tensor_bytes), static_cast<int64_t>(tensors),
                                            "components size in bytes");
    f.components->preallocate(f.components_data + static_cast<uint64_t>(all));
  }
}

template <class T>
void FileSink<T>::put(int slot, const KernelBlock& b, const T* values) {
  Files& f = *files_;
  const int64_t per = f.layout.per_pair(), O = f.layout.outputs;
  const Mode mode = f.layout.mode;
  const T* src = values;
  if (b.diagonal) {
    // only the pairs (i, j ≤ i) hold values: the pairs j > i are their mirror images
    f.square.assign(values, values + b.n1 * b.n2 * per);
    for (int64_t i = 0; i < b.n1; ++i)
      for (int64_t j = i + 1; j < b.n2; ++j)
        engine::copy_swapped(&f.square[(j * b.n2 + i) * per], &f.square[(i * b.n2 + j) * per], O, mode);
    src = f.square.data();
  }
  f.write_rows(slot, b.i0, b.j0, b.n1, b.n2, src);
  if (b.mirrored) {
    f.transposed.resize(static_cast<size_t>(b.n1 * b.n2 * per));
    for (int64_t i = 0; i < b.n1; ++i)
      for (int64_t j = 0; j < b.n2; ++j)
        engine::copy_swapped(src + (i * b.n2 + j) * per, &f.transposed[(j * b.n1 + i) * per], O, mode);
    f.write_rows(slot, b.j0, b.i0, b.n2, b.n1, f.transposed.data());
  }
}

template <class T>
void FileSink<T>::end() {
  Files& f = *files_;
  if (!f.begun || f.ended) throw Error(f.kernel_path + ": file sink ended twice or before it began");
  f.ended = true;
  const int64_t values = numel(f.layout.shape);
  if (f.written == 0) {
    // nothing came (a model without parameters): the preallocated zeros are the kernel
    for (int64_t i = 0; i < values; ++i) f.checksum += detail::checksum_term(static_cast<uint64_t>(i), 0);
  } else if (f.written != values) {
    throw Error(f.kernel_path + ": the file sink received " + std::to_string(f.written) + " of the kernel's " +
                std::to_string(values) + " values");
  }
  if (f.components) {
    const std::string header = f.header(f.checksum);
    if (header.size() != f.components_header.size())
      throw Error(f.components_path + ": the components' header changed length");
    f.components->write_at(0, header.data(), header.size());
    f.components->close();
  }
  f.kernel->close();
}

template <class T>
void FileSink<T>::commit() {
  Files& f = *files_;
  if (!f.ended) throw Error(f.kernel_path + ": file sink committed before its end");
  if (f.committed) return;
  f.kernel->commit();
  if (f.components) f.components->commit();
  f.committed = true;
}

template <class T>
std::string FileSink<T>::checksum() const {
  return detail::format_checksum(files_->checksum);
}

template class FileSink<float>;
template class FileSink<double>;

}  // namespace xntk
