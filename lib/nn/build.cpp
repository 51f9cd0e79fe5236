#include "nn/build.hpp"

#include "checked.hpp"
#include "nn/activation.hpp"
#include "nn/batchnorm.hpp"
#include "nn/conv2d.hpp"
#include "nn/flatten.hpp"
#include "nn/linear.hpp"
#include "nn/pool.hpp"
#include "nn/residual.hpp"

namespace xntk::nn {

namespace {

std::string child_path(const std::string& path, size_t i) {
  return path.empty() ? std::to_string(i) : path + "." + std::to_string(i);
}

template <class T>
std::unique_ptr<Layer<T>> build_node(const LayerSpec& spec, const std::string& path, const Shape& in,
                                     Parameterization p, detail::Rng& rng, int& next_id) {
  return std::visit(
      [&](const auto& s) -> std::unique_ptr<Layer<T>> {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, SequentialBlock>) {
          return build_sequence<T>(s.layers, path, in, p, rng, next_id);
        } else if constexpr (std::is_same_v<S, Residual>) {
          const int id = next_id++;
          if (s.body.empty()) throw Error("layer " + path + " (residual): the body has no layers");
          auto body = build_sequence<T>(s.body, path + ".body", in, p, rng, next_id);
          auto shortcut =
              s.shortcut.empty() ? nullptr : build_sequence<T>(s.shortcut, path + ".shortcut", in, p, rng, next_id);
          auto r = std::make_unique<ResidualLayer<T>>(path, in, std::move(body), std::move(shortcut));
          r->set_id(id);
          return r;
        } else {
          std::unique_ptr<Layer<T>> leaf;
          try {
            if constexpr (std::is_same_v<S, Linear>)
              leaf = std::make_unique<LinearLayer<T>>(path, in, s, p, rng);
            else if constexpr (std::is_same_v<S, Conv2d>)
              leaf = std::make_unique<Conv2dLayer<T>>(path, in, s, p, rng);
            else if constexpr (std::is_same_v<S, AvgPool2d> || std::is_same_v<S, MaxPool2d>)
              leaf = std::make_unique<Pool2dLayer<T>>(path, in, s);
            else if constexpr (std::is_same_v<S, GlobalAvgPool>)
              leaf = std::make_unique<GlobalAvgPoolLayer<T>>(path, in);
            else if constexpr (std::is_same_v<S, BatchNorm2d> || std::is_same_v<S, BatchNorm1d>)
              leaf = std::make_unique<BatchNormLayer<T>>(path, in, s);
            else if constexpr (std::is_same_v<S, Flatten>)
              leaf = std::make_unique<FlattenLayer<T>>(path, in);
            else
              leaf = std::make_unique<ActivationLayer<T>>(path, in, s);
          } catch (const detail::TooLarge& e) {
            throw Error("layer " + path + " (" + type_name(spec) +
                        "): its parameters do not fit in memory: " + e.what());
          }
          leaf->set_id(next_id++);
          return leaf;
        }
      },
      static_cast<const LayerVariant&>(spec));
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
    auto child = build_node<T>(specs[i], child_path(path, i), shape, p, rng, next_id);
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
