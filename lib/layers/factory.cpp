#include "layers/factory.hpp"

#include "layers/activation.hpp"
#include "layers/conv2d.hpp"
#include "layers/flatten.hpp"
#include "layers/linear.hpp"
#include "layers/pool.hpp"

namespace xntk::detail {

template <class T>
std::unique_ptr<Layer<T>> make_layer(const LayerSpec& spec, int index, const Shape& in, Parameterization p, Rng& rng) {
  return std::visit(
      [&](const auto& s) -> std::unique_ptr<Layer<T>> {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, Linear>)
          return std::make_unique<LinearLayer<T>>(index, in, s, p, rng);
        else if constexpr (std::is_same_v<S, Conv2d>)
          return std::make_unique<Conv2dLayer<T>>(index, in, s, p, rng);
        else if constexpr (std::is_same_v<S, AvgPool2d>)
          return std::make_unique<AvgPool2dLayer<T>>(index, in, s);
        else if constexpr (std::is_same_v<S, MaxPool2d>)
          return std::make_unique<MaxPool2dLayer<T>>(index, in, s);
        else if constexpr (std::is_same_v<S, GlobalAvgPool>)
          return std::make_unique<GlobalAvgPoolLayer<T>>(index, in);
        else if constexpr (std::is_same_v<S, Flatten>)
          return std::make_unique<FlattenLayer<T>>(index, in);
        else
          return std::make_unique<ActivationLayer<T>>(index, in, s);
      },
      spec);
}

template std::unique_ptr<Layer<float>> make_layer(const LayerSpec&, int, const Shape&, Parameterization, Rng&);
template std::unique_ptr<Layer<double>> make_layer(const LayerSpec&, int, const Shape&, Parameterization, Rng&);

}  // namespace xntk::detail
