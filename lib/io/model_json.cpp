// The model JSON of docs/files.md: PyTorch's module names (lower case) and argument names and defaults.
// Fields are checked against a per-type list first, so that a misspelt field is reported as unknown
// rather than as a missing required one.

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/file.hpp"
#include "io/json.hpp"
#include "quote.hpp"
#include "xntk/io.hpp"

namespace xntk {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Every integer size of a model (input dimensions, features, channels, kernel sizes, strides, paddings,
// dilations) is at most 2^31 − 1: more than any tensor dimension that fits in memory, and little enough that
// the layers' products of a few of them (conv output sizes, fan-in C·kh·kw) stay far inside int64.
constexpr int64_t kMaxSize = 2147483647;
const std::string kMaxSizeText = "at most 2147483647 (2^31 - 1)";
// The data files hold a sample axis besides the input's, in at most NumPy's 64 dimensions.
constexpr size_t kMaxInputRank = 63;

/// An integer from `min` to kMaxSize (nlohmann keeps non-negative integers as unsigned, larger ones too).
bool size_in_range(const json& v, int64_t min) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= static_cast<uint64_t>(kMaxSize) && v.get<int64_t>() >= min;
  return v.is_number_integer() && v.get<int64_t>() >= min && v.get<int64_t>() <= kMaxSize;
}

/// An integer beyond kMaxSize (as opposed to one of the wrong sign, or no integer at all).
bool too_large(const json& v) {
  return v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(kMaxSize)
                                : v.is_number_integer() && v.get<int64_t>() > kMaxSize;
}

std::string join(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

/// Reads the fields of one layer object, naming the layer and field in every error.
class Fields {
 public:
  Fields(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  /// Every field present must be in `allowed` (besides "type").
  void only(const std::vector<std::string>& allowed) const {
    for (const auto& [key, _] : j_.items()) {
      if (key == "type" || key == "name") continue;
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
        throw Error(where_ + ": unknown field " + detail::quote(key) + "; expected " +
                    (allowed.empty() ? std::string("no other field") : "one of " + join(allowed)));
    }
  }
  bool has(const std::string& key) const { return j_.contains(key); }
  const json& at(const std::string& key) const { return j_.at(key); }

  /// The value of `key` is wrong; a key the layer does not have is a default it inherited (the model's
  /// "training"), named as such.
  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    if (!has(key))
      throw Error(where_ + ": field \"" + key + "\" (inherited from the model): expected " + expected + ", got true");
    throw Error(where_ + ": field \"" + key + "\": expected " + expected + ", got " + detail::excerpt(j_.at(key)));
  }
  [[noreturn]] void missing(const std::string& key, const std::string& expected) const {
    throw Error(where_ + ": missing field \"" + key + "\" (" + expected + ")");
  }

  /// An integer ≥ `min`; required when `fallback` is empty.
  int64_t integer(const std::string& key, int64_t min, std::optional<int64_t> fallback) const {
    const std::string expected = min > 0 ? "a positive integer" : "a non-negative integer";
    if (!has(key)) {
      if (!fallback) missing(key, expected);
      return *fallback;
    }
    const json& v = at(key);
    if (too_large(v)) fail(key, kMaxSizeText);
    if (!size_in_range(v, min)) fail(key, expected);
    return v.get<int64_t>();
  }
  /// An integer or [h, w] of integers ≥ `min`, as PyTorch's `_pair`.
  Size2 pair(const std::string& key, int64_t min, std::optional<int64_t> fallback) const {
    const std::string expected = std::string(min > 0 ? "a positive" : "a non-negative") + " integer or [h, w]";
    if (!has(key)) {
      if (!fallback) missing(key, expected);
      return {*fallback, *fallback};
    }
    const json& v = at(key);
    if (too_large(v) || (v.is_array() && v.size() == 2 && (too_large(v[0]) || too_large(v[1]))))
      fail(key, kMaxSizeText);
    if (size_in_range(v, min)) return {v.get<int64_t>(), v.get<int64_t>()};
    if (v.is_array() && v.size() == 2 && size_in_range(v[0], min) && size_in_range(v[1], min))
      return {v[0].get<int64_t>(), v[1].get<int64_t>()};
    fail(key, expected);
  }
  double number(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>())) fail(key, "a number");
    return v.get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!at(key).is_boolean()) fail(key, "true or false");
    return at(key).get<bool>();
  }
  std::string choice(const std::string& key, const std::vector<std::string>& allowed) const {
    if (!has(key)) return allowed.front();
    const json& v = at(key);
    std::string expected;
    for (const auto& a : allowed) expected += (expected.empty() ? "\"" : ", \"") + a + "\"";
    if (!v.is_string() || std::find(allowed.begin(), allowed.end(), v.get<std::string>()) == allowed.end())
      fail(key, "one of " + expected);
    return v.get<std::string>();
  }
  /// PyTorch arguments xntk supports at one value only (e.g. ceil_mode): present, they must have it.
  void fixed(const std::string& key, const json& value, const std::string& why) const {
    if (has(key) && at(key) != value) fail(key, value.dump() + " (" + why + ")");
  }

 private:
  const json& j_;
  std::string where_;
};

/// Conv2d padding: an integer, [h, w], or PyTorch's "valid" / "same" (stride 1 only, as PyTorch requires).
void conv_padding(const Fields& f, Conv2d& c) {
  if (f.has("padding") && f.at("padding").is_string()) {
    const std::string p = f.choice("padding", {"valid", "same"});
    if (p == "same" && (c.stride.h != 1 || c.stride.w != 1))
      f.fail("padding", "\"same\" only with stride 1, as in PyTorch");
    c.padding_rule = p == "same" ? ConvPadding::same : ConvPadding::valid;
    return;
  }
  if (f.has("padding") && !f.at("padding").is_number() && !f.at("padding").is_array())
    f.fail("padding", "a non-negative integer, [h, w], \"valid\" or \"same\"");
  c.padding = f.pair("padding", 0, 0);
}

LayerSpec parse_layer(const json& j, const std::string& source, const std::string& path, bool training);

/// The layers of a block's field `key` (an array; `allow_empty`: the identity shortcut), at module path `path`.
std::vector<LayerSpec> parse_layers(const Fields& f, const std::string& key, const std::string& source,
                                    const std::string& path, bool allow_empty, bool training) {
  const std::string expected = allow_empty ? "an array of layer objects" : "a non-empty array of layer objects";
  if (!f.has(key)) {
    if (allow_empty) return {};
    f.missing(key, expected);
  }
  const json& v = f.at(key);
  if (!v.is_array() || (v.empty() && !allow_empty)) f.fail(key, expected);
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < v.size(); ++i) layers.push_back(parse_layer(v[i], source, path + std::to_string(i), training));
  return layers;
}

/// `training`: the model's "training" field, the default of the layers that have a training mode.
/// Levenshtein distance (for suggestions).
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t k = 0; k <= b.size(); ++k) row[k] = k;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t k = 1; k <= b.size(); ++k) {
      const size_t up = row[k];
      row[k] = std::min({row[k] + 1, row[k - 1] + 1, diag + (a[i - 1] == b[k - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// PyTorch's class names, accepted as aliases of xntk's type names.
const std::vector<std::pair<std::string, std::string>>& pytorch_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {{"Linear", "linear"},
                                                                         {"Conv2d", "conv2d"},
                                                                         {"AvgPool2d", "avgpool2d"},
                                                                         {"MaxPool2d", "maxpool2d"},
                                                                         {"AdaptiveAvgPool2d", "adaptive_avgpool2d"},
                                                                         {"BatchNorm2d", "batchnorm2d"},
                                                                         {"BatchNorm1d", "batchnorm1d"},
                                                                         {"LayerNorm", "layernorm"},
                                                                         {"Flatten", "flatten"},
                                                                         {"Dropout", "dropout"},
                                                                         {"Dropout2d", "dropout2d"},
                                                                         {"Sequential", "sequential"},
                                                                         {"Residual", "residual"},
                                                                         {"ReLU", "relu"},
                                                                         {"LeakyReLU", "leaky_relu"},
                                                                         {"Tanh", "tanh"},
                                                                         {"Sigmoid", "sigmoid"},
                                                                         {"GELU", "gelu"},
                                                                         {"Softplus", "softplus"},
                                                                         {"SiLU", "silu"},
                                                                         {"ELU", "elu"},
                                                                         {"Identity", "identity"}};
  return names;
}

/// xntk's own type names.
std::vector<std::string> type_names() {
  std::vector<std::string> types = {
      "linear",      "conv2d",    "avgpool2d", "maxpool2d", "global_avgpool", "adaptive_avgpool2d", "batchnorm2d",
      "batchnorm1d", "layernorm", "dropout",   "dropout2d", "flatten",        "residual",           "sequential"};
  for (ActivationKind kind : all_activation_kinds()) types.emplace_back(name(kind));
  return types;
}

/// The closest known name to an unknown type (of xntk's names and PyTorch's), when it is close.
std::string suggestion(const std::string& type) {
  if (type.size() > 64) return "";  // no layer type is that long
  std::vector<std::string> all = type_names();
  for (const auto& [torch, _] : pytorch_names()) all.push_back(torch);
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& n : all) {
    const size_t d = std::min(distance(type, n), distance(lower(type), lower(n)));
    if (d < best_d) best_d = d, best = n;
  }
  return best_d <= std::max<size_t>(2, type.size() / 3) ? best : "";
}

LayerSpec parse_layer_type(const json& j, const std::string& source, const std::string& path, bool training);

/// One layer object: its type (xntk's name or PyTorch's class name) and its optional module "name".
LayerSpec parse_layer(const json& j, const std::string& source, const std::string& path, bool training) {
  LayerSpec layer = parse_layer_type(j, source, path, training);
  if (j.contains("name")) {
    if (!j["name"].is_string())
      throw Error(source + ": layer " + path + ": field \"name\": expected a string (the module name), got " +
                  detail::excerpt(j["name"]));
    layer.name = j["name"].get<std::string>();
  }
  return layer;
}

LayerSpec parse_layer_type(const json& j, const std::string& source, const std::string& path, bool training) {
  const std::string at = source + ": layer " + path;
  if (!j.is_object()) throw Error(at + ": expected an object such as {\"type\": \"relu\"}, got " + detail::excerpt(j));
  if (!j.contains("type")) throw Error(at + ": missing field \"type\"");
  if (!j["type"].is_string())
    throw Error(at + ": field \"type\": expected a string, got " + detail::excerpt(j["type"]));
  const std::string written = j["type"].get<std::string>();
  std::string type = written;
  for (const auto& [torch, ours] : pytorch_names())
    if (written == torch) type = ours;
  const Fields f(j, at + " (" + written + ")");

  if (type == "linear") {
    f.only({"out_features", "in_features", "bias", "w_std", "b_std"});
    Linear l;
    l.out_features = f.integer("out_features", 1, std::nullopt);
    l.in_features = f.integer("in_features", 1, 0);
    l.bias = f.boolean("bias", true);
    l.w_std = f.number("w_std", 1.0);
    l.b_std = f.number("b_std", 1.0);
    return l;
  }
  if (type == "conv2d") {
    f.only({"out_channels", "kernel_size", "stride", "padding", "dilation", "bias", "in_channels", "w_std", "b_std",
            "method", "groups", "padding_mode"});
    f.fixed("padding_mode", "zeros", "xntk supports zero padding only");
    Conv2d c;
    c.out_channels = f.integer("out_channels", 1, std::nullopt);
    c.in_channels = f.integer("in_channels", 1, 0);
    c.kernel_size = f.pair("kernel_size", 1, std::nullopt);
    c.stride = f.pair("stride", 1, 1);
    c.dilation = f.pair("dilation", 1, 1);
    conv_padding(f, c);
    c.groups = f.integer("groups", 1, 1);
    if (c.out_channels % c.groups != 0 || (c.in_channels != 0 && c.in_channels % c.groups != 0))
      f.fail("groups", "a divisor of in_channels and out_channels (" +
                           (c.in_channels != 0 ? std::to_string(c.in_channels) + " and " : std::string()) +
                           std::to_string(c.out_channels) + ")");
    c.bias = f.boolean("bias", true);
    c.w_std = f.number("w_std", 1.0);
    c.b_std = f.number("b_std", 1.0);
    const std::string method = f.choice("method", {"auto", "gradients", "positions"});
    c.method = method == "gradients"   ? ConvMethod::gradients
               : method == "positions" ? ConvMethod::positions
                                       : ConvMethod::automatic;
    return c;
  }
  if (type == "avgpool2d") {
    f.only({"kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"});
    f.fixed("ceil_mode", false, "xntk supports ceil_mode = false only");
    f.fixed("count_include_pad", true, "xntk supports count_include_pad = true only");
    f.fixed("divisor_override", nullptr, "xntk supports no divisor_override");
    AvgPool2d p;
    p.kernel_size = f.pair("kernel_size", 1, std::nullopt);
    // PyTorch's stride=None means the kernel size; the spec says so with 0
    if (f.has("stride") && !f.at("stride").is_null()) p.stride = f.pair("stride", 1, 0);
    p.padding = f.pair("padding", 0, 0);
    return p;
  }
  if (type == "maxpool2d") {
    f.only({"kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"});
    f.fixed("ceil_mode", false, "xntk supports ceil_mode = false only");
    f.fixed("return_indices", false, "a model's layers return their output only");
    MaxPool2d p;
    p.kernel_size = f.pair("kernel_size", 1, std::nullopt);
    if (f.has("stride") && !f.at("stride").is_null()) p.stride = f.pair("stride", 1, 0);
    p.padding = f.pair("padding", 0, 0);
    p.dilation = f.pair("dilation", 1, 1);
    return p;
  }
  if (type == "batchnorm2d" || type == "batchnorm1d") {
    f.only({"num_features", "eps", "momentum", "affine", "track_running_stats", "training"});
    auto fill = [&](auto& b) {
      b.num_features = f.integer("num_features", 1, 0);
      b.eps = f.number("eps", 1e-5);
      if (f.has("momentum") && f.at("momentum").is_null())
        b.momentum = std::nullopt;
      else
        b.momentum = f.number("momentum", 0.1);
      b.affine = f.boolean("affine", true);
      b.track_running_stats = f.boolean("track_running_stats", true);
      b.training = f.boolean("training", training);
    };
    if (type == "batchnorm2d") {
      BatchNorm2d b;
      fill(b);
      return b;
    }
    BatchNorm1d b;
    fill(b);
    return b;
  }
  if (type == "adaptive_avgpool2d") {
    f.only({"output_size"});
    const std::string expected = "a positive integer or [h, w] of positive integers or null (the input's size)";
    if (!f.has("output_size")) f.missing("output_size", expected);
    const json& v = f.at("output_size");
    auto size = [&](const json& e) -> int64_t {  // null: 0, the input's size
      if (e.is_null()) return 0;
      if (too_large(e)) f.fail("output_size", kMaxSizeText);
      if (!size_in_range(e, 1)) f.fail("output_size", expected);
      return e.get<int64_t>();
    };
    AdaptiveAvgPool2d a;
    if (v.is_array()) {
      if (v.size() != 2) f.fail("output_size", expected);
      a.output_size = {size(v[0]), size(v[1])};
    } else {
      a.output_size = size(v);
    }
    if (a.output_size == Size2(1)) return GlobalAvgPool{};
    return a;
  }
  if (type == "layernorm") {
    f.only({"normalized_shape", "eps", "elementwise_affine", "bias"});
    const std::string expected = "a positive integer or a non-empty array of positive integers (the trailing dims)";
    if (!f.has("normalized_shape")) f.missing("normalized_shape", expected);
    const json& v = f.at("normalized_shape");
    LayerNorm l;
    if (v.is_array()) {
      if (v.empty() || v.size() > kMaxInputRank) f.fail("normalized_shape", expected);
      for (const auto& e : v) {
        if (too_large(e)) f.fail("normalized_shape", kMaxSizeText);
        if (!size_in_range(e, 1)) f.fail("normalized_shape", expected);
        l.normalized_shape.push_back(e.get<int64_t>());
      }
    } else {
      if (too_large(v)) f.fail("normalized_shape", kMaxSizeText);
      if (!size_in_range(v, 1)) f.fail("normalized_shape", expected);
      l.normalized_shape = {v.get<int64_t>()};
    }
    l.eps = f.number("eps", 1e-5);
    if (!(l.eps > 0)) f.fail("eps", "a positive number");
    l.elementwise_affine = f.boolean("elementwise_affine", true);
    l.bias = f.boolean("bias", true);
    return l;
  }
  if (type == "dropout" || type == "dropout2d") {
    // eval mode: the identity, so that models with dropout load unchanged
    f.only({"p", "inplace", "training"});
    const double p = f.number("p", 0.5);
    if (p < 0 || p > 1) f.fail("p", "a probability in [0, 1]");
    f.boolean("inplace", false);
    if (f.boolean("training", training))
      f.fail("training", "false (dropout in training mode is random; xntk takes eval mode, the identity)");
    return Identity();
  }
  if (type == "global_avgpool") {
    f.only({});
    return GlobalAvgPool{};
  }
  if (type == "residual") {
    f.only({"body", "shortcut", "body_name", "shortcut_name"});
    Residual r;
    for (const char* key : {"body_name", "shortcut_name"})
      if (f.has(key) && !f.at(key).is_string()) f.fail(key, "a string (a module name, or \"\" for no level)");
    if (f.has("body_name")) r.body_name = f.at("body_name").get<std::string>();
    if (f.has("shortcut_name")) r.shortcut_name = f.at("shortcut_name").get<std::string>();
    r.body = parse_layers(f, "body", source, path + ".body.", false, training);
    r.shortcut = parse_layers(f, "shortcut", source, path + ".shortcut.", true, training);
    return r;
  }
  if (type == "sequential") {
    f.only({"layers"});
    return SequentialBlock{parse_layers(f, "layers", source, path + ".", false, training)};
  }
  if (type == "flatten") {
    f.only({"start_dim", "end_dim"});
    f.fixed("start_dim", 1, "xntk flattens everything but the sample axis");
    f.fixed("end_dim", -1, "xntk flattens everything but the sample axis");
    return Flatten{};
  }
  for (ActivationKind kind : all_activation_kinds()) {
    if (type != name(kind)) continue;
    Activation a{kind};
    switch (kind) {
      case ActivationKind::leaky_relu:
        f.only({"negative_slope"});
        a.negative_slope = f.number("negative_slope", 0.01);
        break;
      case ActivationKind::elu:
        f.only({"alpha"});
        a.alpha = f.number("alpha", 1.0);
        break;
      case ActivationKind::softplus:
        f.only({"beta", "threshold"});
        a.beta = f.number("beta", 1.0);
        a.threshold = f.number("threshold", 20.0);
        break;
      case ActivationKind::gelu:
        f.only({"approximate"});
        a.approximate = f.choice("approximate", {"none", "tanh"});
        break;
      default: f.only({});
    }
    return a;
  }
  const std::string near = suggestion(written);
  throw Error(at + ": unknown layer type " + detail::quote(written) +
              (near.empty() ? "" : " (did you mean \"" + near + "\"?)") +
              "; expected a type of docs/cli.md (linear, conv2d, batchnorm2d, relu, global_avgpool, residual, "
              "sequential, ...) or PyTorch's class name (Conv2d, BatchNorm2d, ReLU, ...)");
}

Shape parse_input(const json& v, const std::string& source) {
  const std::string where = source + ": field \"input\": ";
  const std::string expected = "a positive integer or an array of them, e.g. 784 or [3, 32, 32]";
  if (too_large(v) || (v.is_array() && std::any_of(v.begin(), v.end(), too_large)))
    throw Error(where + "each dimension must be " + kMaxSizeText + ", got " + detail::excerpt(v));
  if (size_in_range(v, 1)) return {v.get<int64_t>()};
  if (!v.is_array() || v.empty()) throw Error(where + "expected " + expected + ", got " + detail::excerpt(v));
  if (v.size() > kMaxInputRank)
    throw Error(where + std::to_string(v.size()) + " dimensions; expected at most " + std::to_string(kMaxInputRank));
  Shape s;
  int64_t elements = 1;
  for (const auto& d : v) {
    if (!size_in_range(d, 1)) throw Error(where + "expected " + expected + ", got " + detail::excerpt(v));
    s.push_back(d.get<int64_t>());
    // each factor is below 2^31: the product overflows nothing before it passes the limit
    elements *= s.back();
    if (elements > kMaxSize)
      throw Error(where + "expected at most 2147483647 (2^31 - 1) elements per sample, got " + detail::excerpt(v));
  }
  return s;
}

/// An integer pair as PyTorch prints it: `3` when both are equal, else `[3, 5]`.
ordered_json pair_json(Size2 s) {
  if (s.h == s.w) return s.h;
  return ordered_json::array({s.h, s.w});
}

ordered_json layer_json(const LayerSpec& layer);

ordered_json layers_json(const std::vector<LayerSpec>& layers) {
  ordered_json a = ordered_json::array();
  for (const auto& l : layers) a.push_back(layer_json(l));
  return a;
}

ordered_json layer_json(const LayerSpec& layer) {
  ordered_json j;
  j["type"] = type_name(layer);
  if (layer.name) j["name"] = *layer.name;
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, Linear>) {
          j["out_features"] = s.out_features;
          if (s.in_features > 0) j["in_features"] = s.in_features;
          j["bias"] = s.bias;
          j["w_std"] = s.w_std;
          j["b_std"] = s.b_std;
        } else if constexpr (std::is_same_v<S, Conv2d>) {
          j["out_channels"] = s.out_channels;
          if (s.in_channels > 0) j["in_channels"] = s.in_channels;
          j["kernel_size"] = pair_json(s.kernel_size);
          j["stride"] = pair_json(s.stride);
          j["padding"] =
              s.padding_rule == ConvPadding::sizes ? pair_json(s.padding) : ordered_json(name(s.padding_rule));
          j["dilation"] = pair_json(s.dilation);
          j["groups"] = s.groups;
          j["bias"] = s.bias;
          j["w_std"] = s.w_std;
          j["b_std"] = s.b_std;
          j["method"] = name(s.method);
        } else if constexpr (std::is_same_v<S, AvgPool2d>) {
          j["kernel_size"] = pair_json(s.kernel_size);
          j["stride"] = s.stride == Size2(0) ? ordered_json(nullptr) : pair_json(s.stride);
          j["padding"] = pair_json(s.padding);
        } else if constexpr (std::is_same_v<S, MaxPool2d>) {
          j["kernel_size"] = pair_json(s.kernel_size);
          j["stride"] = s.stride == Size2(0) ? ordered_json(nullptr) : pair_json(s.stride);
          j["padding"] = pair_json(s.padding);
          j["dilation"] = pair_json(s.dilation);
        } else if constexpr (std::is_same_v<S, BatchNorm2d> || std::is_same_v<S, BatchNorm1d>) {
          if (s.num_features > 0) j["num_features"] = s.num_features;
          j["eps"] = s.eps;
          j["momentum"] = s.momentum ? ordered_json(*s.momentum) : ordered_json(nullptr);
          j["affine"] = s.affine;
          j["track_running_stats"] = s.track_running_stats;
          if (s.training) j["training"] = true;
        } else if constexpr (std::is_same_v<S, AdaptiveAvgPool2d>) {
          auto size = [](int64_t v) { return v == 0 ? ordered_json(nullptr) : ordered_json(v); };
          j["output_size"] = ordered_json::array({size(s.output_size.h), size(s.output_size.w)});
        } else if constexpr (std::is_same_v<S, LayerNorm>) {
          j["normalized_shape"] = s.normalized_shape;
          j["eps"] = s.eps;
          j["elementwise_affine"] = s.elementwise_affine;
          if (!s.bias) j["bias"] = false;
        } else if constexpr (std::is_same_v<S, Activation>) {
          switch (s.kind) {
            case ActivationKind::leaky_relu: j["negative_slope"] = s.negative_slope; break;
            case ActivationKind::elu: j["alpha"] = s.alpha; break;
            case ActivationKind::softplus:
              j["beta"] = s.beta;
              j["threshold"] = s.threshold;
              break;
            case ActivationKind::gelu: j["approximate"] = s.approximate; break;
            default: break;
          }
        } else if constexpr (std::is_same_v<S, Residual>) {
          j["body"] = layers_json(s.body);
          j["shortcut"] = layers_json(s.shortcut);
          if (s.body_name != "body") j["body_name"] = s.body_name;
          if (s.shortcut_name != "shortcut") j["shortcut_name"] = s.shortcut_name;
        } else if constexpr (std::is_same_v<S, SequentialBlock>) {
          j["layers"] = layers_json(s.layers);
        }
      },
      static_cast<const LayerVariant&>(layer));
  return j;
}

}  // namespace

ModelSpec parse_model_spec(const std::string& json_text, const std::string& source) {
  // nesting at most 64 deep, each key once, numbers within double's range; errors name the file
  const json j = detail::parse_json(json_text, source);
  if (!j.is_object())
    throw Error(source + ": expected a JSON object {\"input\": [...], \"layers\": [...]}, got " +
                std::string(j.type_name()));
  for (const auto& [key, _] : j.items())
    if (key != "input" && key != "parameterization" && key != "layers" && key != "training")
      throw Error(source + ": unknown field " + detail::quote(key) +
                  "; expected input, parameterization, layers, training");
  if (!j.contains("input"))
    throw Error(source + ": missing field \"input\" (the per-sample input shape, e.g. [3, 32, 32])");
  if (!j.contains("layers")) throw Error(source + ": missing field \"layers\" (an array of layer objects)");
  ModelSpec spec;
  spec.input = parse_input(j["input"], source);
  if (j.contains("parameterization")) {
    const json& p = j["parameterization"];
    if (p == "standard")
      spec.parameterization = Parameterization::standard;
    else if (p == "ntk")
      spec.parameterization = Parameterization::ntk;
    else
      throw Error(source + ": field \"parameterization\": expected \"standard\" or \"ntk\", got " + detail::excerpt(p));
  }
  const json& layers = j["layers"];
  if (!layers.is_array() || layers.empty())
    throw Error(source + ": field \"layers\": expected a non-empty array of layer objects, got " +
                detail::excerpt(layers));
  // "training": true (a model exported in train mode) is the default of every layer that has a training mode,
  // which then refuses it (BatchNorm: batch statistics couple the samples)
  bool training = false;
  if (j.contains("training")) {
    if (!j["training"].is_boolean())
      throw Error(source + ": field \"training\": expected true or false, got " + detail::excerpt(j["training"]));
    training = j["training"].get<bool>();
  }
  for (size_t i = 0; i < layers.size(); ++i)
    spec.layers.push_back(parse_layer(layers[i], source, std::to_string(i), training));
  return spec;
}

ModelSpec load_model_spec(const std::string& path) {
  detail::InputFile f(path);
  // a model description is small; anything huge is the wrong file, refused before reading it into memory
  if (f.size() > 64u << 20)
    throw Error(path + ": " + std::to_string(f.size()) + " bytes is too large for a model JSON");
  std::string text(f.size(), '\0');
  f.read(text.data(), f.size(), "the model JSON");
  return parse_model_spec(text, path);
}

std::string model_spec_to_json(const ModelSpec& spec) {
  ordered_json j;
  j["input"] = spec.input;
  j["parameterization"] = name(spec.parameterization);
  j["layers"] = ordered_json::array();
  for (const auto& l : spec.layers) j["layers"].push_back(layer_json(l));
  // one layer per line: readable, and diffs show which layer changed
  std::ostringstream out;
  out << "{\n  \"input\": " << j["input"].dump() << ",\n  \"parameterization\": " << j["parameterization"].dump()
      << ",\n  \"layers\": [\n";
  for (size_t i = 0; i < j["layers"].size(); ++i)
    out << "    " << j["layers"][i].dump() << (i + 1 < j["layers"].size() ? ",\n" : "\n");
  out << "  ]\n}\n";
  return out.str();
}

void save_model_spec(const std::string& path, const ModelSpec& spec) {
  detail::AtomicFile f(path);
  f.stream() << model_spec_to_json(spec);
  f.commit();
}

}  // namespace xntk
