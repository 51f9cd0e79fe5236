#pragma once
/// \file io.hpp
/// Files other tools exchange with xntk (docs/cli.md): NumPy `.npy` arrays, safetensors weight and
/// kernel files, and the model JSON. Every reader validates the whole header against the file before
/// allocating; every problem raises xntk::Error naming the file, the field or tensor, and what was expected.
/// Writers are atomic: they write a temporary file in the target's directory and rename it when complete.

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "xntk/model.hpp"
#include "xntk/tensor.hpp"

namespace xntk {

// ---- NumPy .npy ----

/// What a `.npy` header says, validated against the file's size.
struct NpyInfo {
  Shape shape;
  int itemsize = 0;            ///< 4 (float32) or 8 (float64)
  bool fortran_order = false;  ///< column-major data
  bool swapped = false;        ///< data in the other byte order than the host's
  uint64_t data_offset = 0;    ///< where the data starts in the file (after the header)
};

/// Reads and validates a `.npy` header without reading the data (xntk::Error as read_npy).
NpyInfo read_npy_info(const std::string& path);

/// Reads a `.npy` array of float32 or float64 (either byte order, C or Fortran order; format versions
/// 1.0, 2.0 and 3.0), converting to T. Fortran-ordered data is transposed into C order.
template <class T>
Tensor<T> read_npy(const std::string& path);

/// As read_npy, and also integer arrays (int8 … int64, uint8 … uint64, either byte order), converted exactly:
/// class labels for cross-entropy targets. xntk::Error for an integer beyond 2^24 (float) or 2^53 (double).
template <class T>
Tensor<T> read_npy_labels(const std::string& path);

/// Writes `t` as a little-endian, C-order `.npy` (format 1.0, or 2.0 when the header needs it), atomically.
template <class T>
void write_npy(const std::string& path, const Tensor<T>& t);
/// The same bytes to a stream (for callers that manage the file themselves).
template <class T>
void write_npy(std::ostream& out, const Tensor<T>& t);

// ---- safetensors ----

/// Reads every tensor of a safetensors file (dtypes F32, F64 and I64, converted to T), in the order of their
/// data in the file (the order in which they were written). `__metadata__` is accepted and, when
/// `metadata` is given, returned through it. Names, dtypes, shapes and offsets are validated against the
/// file size before any tensor is allocated.
template <class T>
std::vector<NamedTensor<T>> read_safetensors(const std::string& path,
                                             std::map<std::string, std::string>* metadata = nullptr);

/// Writes the tensors in the given order as little-endian F32 (T = float) or F64 (T = double), atomically.
/// Names must be unique, non-empty and not `__metadata__`.
template <class T>
void write_safetensors(const std::string& path, const std::vector<NamedTensor<T>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
/// The same bytes to a stream.
template <class T>
void write_safetensors(std::ostream& out, const std::vector<NamedTensor<T>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// ---- model weights ----

/// Sets every parameter of `model`, and the buffers the file holds, from a safetensors file whose names are the
/// model's state_dict keys ("3.weight", "1.running_mean"). Every parameter must be present with its exact shape
/// and finite values; a buffer may be absent (it keeps its value: BatchNorm's running_mean 0, running_var 1);
/// the file must hold no other tensor. Integer tensors (I64, such as num_batches_tracked) are accepted and
/// converted. On error the model is left unchanged.
template <class T>
void load_weights(Sequential<T>& model, const std::string& path);

/// Writes the model's state_dict (each layer's parameters, then its buffers) under its state_dict names.
template <class T>
void save_weights(const Sequential<T>& model, const std::string& path);

// ---- model JSON ----

/// Parses the model JSON of docs/cli.md (`{"input": [...], "parameterization": ..., "layers": [...]}`).
/// `source` names the text in error messages (usually the file name). Fields and defaults are PyTorch's;
/// an unknown type or field is an error naming the layer index and the field. Whether the layers chain
/// is checked when a Sequential is built from the result.
ModelSpec parse_model_spec(const std::string& json_text, const std::string& source = "model");

/// Reads and parses a model JSON file.
ModelSpec load_model_spec(const std::string& path);

/// The model JSON of a spec: every field written explicitly, so `parse_model_spec` gives the spec back.
std::string model_spec_to_json(const ModelSpec& spec);

/// Writes `model_spec_to_json(spec)` to a file, atomically.
void save_model_spec(const std::string& path, const ModelSpec& spec);

}  // namespace xntk
