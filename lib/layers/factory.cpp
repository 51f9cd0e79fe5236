#include "layers/factory.hpp"

#include "layers/activation.hpp"
#include "layers/linear.hpp"

namespace xntk::detail {

template <class T>
std::unique_ptr<Layer<T>> make_layer(const LayerSpec& spec, int index, const Shape& in, Parameterization p, Rng& rng) {
  return std::visit(
      [&](const auto& s) -> std::unique_ptr<Layer<T>> {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, Linear>)
          return std::make_unique<LinearLayer<T>>(index, in, s, p, rng);
        else if constexpr (std::is_same_v<S, Activation>)
          return std::make_unique<ActivationLayer<T>>(index, in, s);
        else
          throw Error("layer " + std::to_string(index) + " (" + type_name(spec) + "): not supported yet");
      },
      spec);
}

template std::unique_ptr<Layer<float>> make_layer(const LayerSpec&, int, const Shape&, Parameterization, Rng&);
template std::unique_ptr<Layer<double>> make_layer(const LayerSpec&, int, const Shape&, Parameterization, Rng&);

}  // namespace xntk::detail
