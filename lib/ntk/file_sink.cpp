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
#include "ntk/block_writer.hpp"
#include "ntk/memory_sink.hpp"
#include "xntk/sink.hpp"

namespace xntk {

namespace engine {

template <class T>
BlockWriter<T>::BlockWriter(std::string kernel_path, std::string components_path,
                            std::map<std::string, std::string> metadata, detail::BlockFile* kernel,
                            detail::BlockFile* components)
    : kernel_path_(std::move(kernel_path)),
      components_path_(std::move(components_path)),
      metadata_(std::move(metadata)),
      kernel_(kernel),
      components_(components) {}

template <class T>
std::string BlockWriter<T>::header(uint64_t h) const {
  std::vector<std::pair<std::string, Shape>> entries;
  for (const auto& name : layout_.components) entries.emplace_back(name, layout_.shape);
  entries.emplace_back("total", layout_.shape);
  auto meta = metadata_;
  meta["kernel_checksum"] = detail::format_checksum(h);
  return detail::safetensors_header(entries, sizeof(T), meta);
}

template <class T>
int64_t BlockWriter<T>::values() const {
  return numel(layout_.shape);
}

/// n values at byte `offset` of `file`, little-endian.
template <class T>
void BlockWriter<T>::write(detail::BlockFile& file, uint64_t offset, const T* v, int64_t n) {
  if constexpr (std::endian::native == std::endian::little) {
    file.write_at(offset, v, static_cast<uint64_t>(n) * sizeof(T));
  } else {
    bytes_.resize(static_cast<size_t>(n) * sizeof(T));
    for (int64_t i = 0; i < n; ++i) {
      const T s = detail::byteswap(v[i]);
      std::memcpy(bytes_.data() + i * sizeof(T), &s, sizeof(T));
    }
    file.write_at(offset, bytes_.data(), bytes_.size());
  }
}

/// Rows [r0, r0 + rows) by columns [c0, c0 + cols) of slot `slot`, from src (rows, cols, per).
template <class T>
void BlockWriter<T>::write_rows(int slot, int64_t r0, int64_t c0, int64_t rows, int64_t cols, const T* src) {
  const int64_t per = layout_.per_pair(), row = cols * per;
  for (int64_t r = 0; r < rows; ++r) {
    const T* v = src + r * row;
    const int64_t first = ((r0 + r) * layout_.m + c0) * per;  // the row's first value, in C order
    const uint64_t at = static_cast<uint64_t>(first) * sizeof(T);
    if (slot == 0) {
      write(*kernel_, kernel_data_ + at, v, row);
      for (int64_t e = 0; e < row; ++e)
        checksum_ += detail::checksum_term(static_cast<uint64_t>(first + e), detail::stored_bits(v[e], sizeof(T)));
      written_ += row;
    }
    if (components_) {
      const uint64_t tensor = slot == 0 ? layout_.components.size() : static_cast<uint64_t>(slot - 1);
      write(*components_, components_data_ + tensor * tensor_bytes_ + at, v, row);
    }
  }
}

template <class T>
void BlockWriter<T>::begin(const KernelLayout& layout, bool primary) {
  if (begun_) throw Error(kernel_path_ + ": the file sink has already received a kernel");
  begun_ = true;
  if (components_ && layout.components.empty())
    throw Error(components_path_ + ": components were not requested; set KernelOptions::components");
  layout_ = layout;
  const int64_t values = numel(layout.shape);
  tensor_bytes_ = static_cast<uint64_t>(detail::checked_mul(values, int64_t{sizeof(T)}, "kernel size in bytes"));
  const std::string npy = detail::npy_header(layout.shape, sizeof(T));
  kernel_data_ = npy.size();
  if (primary) {
    kernel_->write_at(0, npy.data(), npy.size());
    kernel_->preallocate(kernel_data_ + tensor_bytes_);
  }
  if (components_) {
    const std::string h = header(0);
    components_header_ = h.size();
    components_data_ = h.size();
    const uint64_t tensors = layout.components.size() + 1;
    const int64_t all = detail::checked_mul(static_cast<int64_t>(tensor_bytes_), static_cast<int64_t>(tensors),
                                            "components size in bytes");
    if (primary) {
      components_->write_at(0, h.data(), h.size());
      components_->preallocate(components_data_ + static_cast<uint64_t>(all));
    }
  }
}

template <class T>
void BlockWriter<T>::put(int slot, const KernelBlock& b, const T* values) {
  const int64_t per = layout_.per_pair(), O = layout_.outputs;
  const Mode mode = layout_.mode;
  const T* src = values;
  if (b.diagonal) {
    // only the pairs (i, j ≤ i) hold values: the pairs j > i are their mirror images
    square_.assign(values, values + b.n1 * b.n2 * per);
    for (int64_t i = 0; i < b.n1; ++i)
      for (int64_t j = i + 1; j < b.n2; ++j)
        copy_swapped(&square_[(j * b.n2 + i) * per], &square_[(i * b.n2 + j) * per], O, mode);
    src = square_.data();
  }
  write_rows(slot, b.i0, b.j0, b.n1, b.n2, src);
  if (b.mirrored) {
    transposed_.resize(static_cast<size_t>(b.n1 * b.n2 * per));
    for (int64_t i = 0; i < b.n1; ++i)
      for (int64_t j = 0; j < b.n2; ++j)
        copy_swapped(src + (i * b.n2 + j) * per, &transposed_[(j * b.n1 + i) * per], O, mode);
    write_rows(slot, b.j0, b.i0, b.n2, b.n1, transposed_.data());
  }
}

template <class T>
void BlockWriter<T>::finish(uint64_t checksum, int64_t written, bool primary) {
  const int64_t values = numel(layout_.shape);
  if (written == 0) {
    // nothing came (a model without parameters): the preallocated zeros are the kernel
    checksum = 0;
    for (int64_t i = 0; i < values; ++i) checksum += detail::checksum_term(static_cast<uint64_t>(i), 0);
  } else if (written != values) {
    throw Error(kernel_path_ + ": the file sink received " + std::to_string(written) + " of the kernel's " +
                std::to_string(values) + " values");
  }
  checksum_ = checksum;
  written_ = written;
  if (components_ && primary) {
    const std::string h = header(checksum);
    if (h.size() != components_header_) throw Error(components_path_ + ": the components' header changed length");
    components_->write_at(0, h.data(), h.size());
  }
}

template class BlockWriter<float>;
template class BlockWriter<double>;

}  // namespace engine

namespace {

/// An AtomicFile as a BlockFile (its sync is the close before the rename).
class AtomicBlockFile final : public detail::BlockFile {
 public:
  explicit AtomicBlockFile(std::string path) : file(std::move(path)) {}
  void preallocate(uint64_t bytes) override { file.preallocate(bytes); }
  void write_at(uint64_t offset, const void* data, uint64_t n) override { file.write_at(offset, data, n); }
  void sync() override {}
  void close() override { file.close(); }
  detail::AtomicFile file;
};

}  // namespace

template <class T>
struct FileSink<T>::Files {
  std::string kernel_path;
  std::optional<AtomicBlockFile> kernel, components;
  std::optional<engine::BlockWriter<T>> writer;
  bool begun = false, ended = false, committed = false;
};

template <class T>
FileSink<T>::FileSink(std::string kernel_path, std::string components_path,
                      std::vector<std::pair<std::string, std::string>> metadata)
    : files_(std::make_unique<Files>()) {
  Files& f = *files_;
  f.kernel_path = kernel_path;
  std::map<std::string, std::string> meta;
  for (auto& [key, value] : metadata) {
    if (key == "kernel_checksum") throw Error("file sink: metadata key \"kernel_checksum\" is the sink's own");
    meta[key] = std::move(value);
  }
  if (!components_path.empty() && !detail::is_null_device(kernel_path) &&
      detail::same_output_file(kernel_path, components_path))
    throw Error(components_path + ": the components would overwrite the kernel " + kernel_path +
                "; expected another file");
  // created now: an unwritable destination fails before any computation
  f.kernel.emplace(kernel_path);
  if (!components_path.empty()) f.components.emplace(components_path);
  f.writer.emplace(kernel_path, components_path, std::move(meta), &*f.kernel, f.components ? &*f.components : nullptr);
}

template <class T>
FileSink<T>::~FileSink() = default;

template <class T>
void FileSink<T>::begin(const KernelLayout& layout) {
  Files& f = *files_;
  if (f.begun) throw Error(f.kernel_path + ": the file sink has already received a kernel");
  f.begun = true;
  f.writer->begin(layout, true);
}

template <class T>
void FileSink<T>::put(int slot, const KernelBlock& b, const T* values) {
  files_->writer->put(slot, b, values);
}

template <class T>
void FileSink<T>::end() {
  Files& f = *files_;
  if (!f.begun || f.ended) throw Error(f.kernel_path + ": file sink ended twice or before it began");
  f.ended = true;
  f.writer->finish(f.writer->checksum(), f.writer->written(), true);
  if (f.components) f.components->close();
  f.kernel->close();
}

template <class T>
void FileSink<T>::commit() {
  Files& f = *files_;
  if (!f.ended) throw Error(f.kernel_path + ": file sink committed before its end");
  if (f.committed) return;
  f.kernel->file.commit();
  if (f.components) f.components->file.commit();
  f.committed = true;
}

template <class T>
std::string FileSink<T>::checksum() const {
  return detail::format_checksum(files_->writer->checksum());
}

template class FileSink<float>;
template class FileSink<double>;

}  // namespace xntk
