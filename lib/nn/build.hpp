#pragma once
// The computing layers of a model spec: each LayerSpec becomes a leaf or a block, validated against its input
// shape, with its module path and node number.

#include <memory>

#include "nn/sequential.hpp"
#include "random.hpp"

namespace xntk::nn {

/// The layers `specs` in sequence on per-sample input `in`, as a block at module path `path` ("" for the model).
/// Node numbers are taken from `next_id` in pre-order; parameters are drawn from `rng` in that order.
template <class T>
std::unique_ptr<SequentialLayer<T>> build_sequence(const std::vector<LayerSpec>& specs, const std::string& path,
                                                   const Shape& in, Parameterization p, detail::Rng& rng, int& next_id);

}  // namespace xntk::nn
