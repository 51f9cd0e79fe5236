#include "nn/build.hpp"

#include <cctype>

#include "checked.hpp"
#include "nn/activation.hpp"
#include "nn/batchnorm.hpp"
#include "nn/conv2d.hpp"
#include "nn/flatten.hpp"
#include "nn/layernorm.hpp"
#include "nn/linear.hpp"
#include "nn/pool.hpp"
#include "nn/residual.hpp"

namespace xntk::nn {

namespace {

/// `path` extended by `own` ("" adds no level).
std::string join_path(const std::string& path, const std::string& own) {
  if (own.empty()) return path;
  return path.empty() ? own : path + "." + own;
}

/// A module name: dot-separated non-empty parts of letters, digits and '_' (or "", no level of its own).
bool valid_name(const std::string& name) {
  if (name.empty()) return true;
  bool part_empty = true;
  for (char c : name) {
    if (c == '.') {
      if (part_empty) return false;
      part_empty = true;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      part_empty = false;
    } else {
      return false;
    }
  }
  return !part_empty;
}

/// The module path of child i of the block at `path`: its name, or its index.
std::string child_path(const std::string& path, size_t i, const LayerSpec& spec) {
  const bool block = std::holds_alternative<Residual>(spec) || std::holds_alternative<SequentialBlock>(spec);
  const std::string at = "layer " + join_path(path, std::to_string(i)) + " (" + type_name(spec) + ")";
  if (spec.name) {
    if (!valid_name(*spec.name))
      throw Error(at + ": name \"" + *spec.name +
                  "\" is not a module name (dot-separated parts of letters, digits and '_')");
    if (spec.name->empty() && !block)
      throw Error(at + ": an empty name is for blocks only (a layer's parameters need a module name)");
  }
  return join_path(path, spec.name ? *spec.name : std::to_string(i));
}

/// AdaptiveAvgPool2d: global average pooling for an output of 1 × 1, an AvgPool2d where the windows tile the
/// input evenly (the same windows), the averaging map otherwise.
template <class T>
std::unique_ptr<Leaf<T>> adaptive_pool(const std::string& path, const Shape& in, const AdaptiveAvgPool2d& s) {
  if (in.size() == 3) {
    const int64_t oh = s.output_size.h == 0 ? in[1] : s.output_size.h;
    const int64_t ow = s.output_size.w == 0 ? in[2] : s.output_size.w;
    if (oh == 1 && ow == 1) return std::make_unique<GlobalAvgPoolLayer<T>>(path, in);
    if (oh > 0 && ow > 0 && in[1] % oh == 0 && in[2] % ow == 0)
      return std::make_unique<Pool2dLayer<T>>(path, in, AvgPool2d{.kernel_size = {in[1] / oh, in[2] / ow}});
  }
  return std::make_unique<AdaptiveAvgPoolLayer<T>>(path, in, s.output_size);
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
          const std::string &body_name = s.body_name, &shortcut_name = s.shortcut_name;
          for (const std::string* n : {&body_name, &shortcut_name})
            if (!valid_name(*n))
              throw Error("layer " + path + " (residual): branch name \"" + *n +
                          "\" is not a module name (dot-separated parts of letters, digits and '_')");
          auto body = build_sequence<T>(s.body, join_path(path, body_name), in, p, rng, next_id);
          auto shortcut = s.shortcut.empty()
                              ? nullptr
                              : build_sequence<T>(s.shortcut, join_path(path, shortcut_name), in, p, rng, next_id);
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
            else if constexpr (std::is_same_v<S, AdaptiveAvgPool2d>)
              leaf = adaptive_pool<T>(path, in, s);
            else if constexpr (std::is_same_v<S, BatchNorm2d> || std::is_same_v<S, BatchNorm1d>)
              leaf = std::make_unique<BatchNormLayer<T>>(path, in, s);
            else if constexpr (std::is_same_v<S, LayerNorm>)
              leaf = std::make_unique<LayerNormLayer<T>>(path, in, s);
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
    auto child = build_node<T>(specs[i], child_path(path, i, specs[i]), shape, p, rng, next_id);
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
