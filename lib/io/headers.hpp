#pragma once
// The headers of the two file formats xntk writes, apart from their data, for writers that place the data
// themselves (the file sink writes kernel blocks at their offsets in preallocated files).

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "xntk/tensor.hpp"

namespace xntk::detail {

/// The bytes of a `.npy` file before its data: magic, version (2.0 when the header needs it), header length
/// and the padded dictionary ('<f4' or '<f8' by `itemsize`, C order), so that the data starts at a multiple
/// of 64 bytes, as NumPy writes it.
std::string npy_header(const Shape& shape, int itemsize);

/// The bytes of a safetensors file before its data: the header length (8 bytes, little-endian) and the JSON
/// header naming each tensor's dtype ("F32"/"F64" by `itemsize`), shape and data offsets (the tensors stored
/// one after the other in the given order), padded with spaces so that the data starts 8-byte aligned.
/// xntk::Error for an empty, reserved or repeated name.
std::string safetensors_header(const std::vector<std::pair<std::string, Shape>>& tensors, int itemsize,
                               const std::map<std::string, std::string>& metadata);

}  // namespace xntk::detail
