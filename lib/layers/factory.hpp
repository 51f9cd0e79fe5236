#pragma once
// LayerSpec -> computing layer, validating the spec against its input shape.

#include <memory>

#include "layer.hpp"
#include "random.hpp"

namespace xntk::detail {

template <class T>
std::unique_ptr<Layer<T>> make_layer(const LayerSpec& spec, int index, const Shape& in, Parameterization p, Rng& rng);

}  // namespace xntk::detail
