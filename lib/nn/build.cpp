#include "nn/build.hpp"

#include "nn/activation.hpp"
#include "nn/conv2d.hpp"
#include "nn/flatten.hpp"
#include "nn/linear.hpp"
#include "nn/pool.hpp"

namespace xntk::nn {

namespace {

std::string child_path(const std::string& path, size_t i) {
  return path.empty() ? std::to_string(i) : path + "." + std::to_string(i);
}

template <class T>
std::unique_ptr<Layer<T>> build_leaf(const LayerSpec& spec, const std::string& path, const Shape& in,
                                     Parameterization p, detail::Rng& rng) {
  return std::visit(
      [&](const auto& s) -> std::unique_ptr<Layer<T>> {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, Linear>)
          return std::make_unique<LinearLayer<T>>(path, in, s, p, rng);
        else if constexpr (std::is_same_v<S, Conv2d>)
          return std::make_unique<Conv2dLayer<T>>(path, in, s, p, rng);
        else if constexpr (std::is_same_v<S, AvgPool2d> || std::is_same_v<S, MaxPool2d>)
          return std::make_unique<Pool2dLayer<T>>(path, in, s);
        else if constexpr (std::is_same_v<S, GlobalAvgPool>)
          return std::make_unique<GlobalAvgPoolLayer<T>>(path, in);
        else if constexpr (std::is_same_v<S, Flatten>)
          return std::make_unique<FlattenLayer<T>>(path, in);
        else
          return std::make_unique<ActivationLayer<T>>(path, in, s);
      },
      spec);
}

}  // namespace

template <class T>
std::unique_ptr<SequentialLayer<T>> build_sequence(const std::vector<LayerSpec>& specs, const std::string& path,
                                                   const Shape& in, Parameterization p, detail::Rng& rng,
                                                   int& next_id) {
  if (specs.empty()) throw Error(path.empty() ? "model: no layers" : "layer " + path + " (sequential): no layers");
  const int id = next_id++;
  std::vector<std::unique_ptr<Layer<T>>> children;
  Shape shape = in;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto child = build_leaf<T>(specs[i], child_path(path, i), shape, p, rng);
    child->set_id(next_id++);
    shape = child->out_shape();
    children.push_back(std::move(child));
  }
  auto block = std::make_unique<SequentialLayer<T>>(path, in, std::move(children));
  block->set_id(id);
  return block;
}

template std::unique_ptr<SequentialLayer<float>> build_sequence(const std::vector<LayerSpec>&, const std::string&,
                                                                const Shape&, Parameterization, detail::Rng&, int&);
template std::unique_ptr<SequentialLayer<double>> build_sequence(const std::vector<LayerSpec>&, const std::string&,
                                                                 const Shape&, Parameterization, detail::Rng&, int&);

}  // namespace xntk::nn
