// Names as PyTorch writes them: the model JSON's PyTorch class names (aliases), the nearest name for a typo,
// Dropout and AdaptiveAvgPool2d(1) as the layers they are in eval mode, and module names ("name",
// Residual's body_name / shortcut_name) that make parameter names a non-Sequential module's state_dict keys.

#include <catch2/catch.hpp>

#include "files.hpp"
#include "helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

std::string error_of(const std::string& text) {
  try {
    Sequential<double>(parse_model_spec(text, "net.json"), 0);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> names_of(const std::vector<NamedParameter<double>>& v) {
  std::vector<std::string> r;
  for (const auto& t : v) r.push_back(t.name);
  return r;
}

}  // namespace

TEST_CASE("model JSON: PyTorch's class names are aliases of xntk's type names", "[io][names]") {
  const std::string torch = R"({"input": [3, 8, 8], "layers": [
      {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 3], "stride": [1, 1],
       "padding": [1, 1], "dilation": [1, 1], "groups": 1, "bias": false, "padding_mode": "zeros"},
      {"type": "BatchNorm2d", "num_features": 4, "eps": 1e-05, "momentum": 0.1, "affine": true,
       "track_running_stats": true},
      {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 3, "stride": 2, "padding": 1, "dilation": 1,
       "ceil_mode": false, "return_indices": false},
      {"type": "Dropout2d", "p": 0.2}, {"type": "LeakyReLU", "negative_slope": 0.2}, {"type": "AvgPool2d",
       "kernel_size": 2}, {"type": "AdaptiveAvgPool2d", "output_size": [1, 1]}, {"type": "Flatten"},
      {"type": "Dropout", "p": 0.5, "inplace": false}, {"type": "Linear", "in_features": 4, "out_features": 3},
      {"type": "Tanh"}, {"type": "Sigmoid"}, {"type": "GELU", "approximate": "none"}, {"type": "SiLU"},
      {"type": "ELU", "alpha": 1.0}, {"type": "Softplus", "beta": 1.0, "threshold": 20.0}, {"type": "Identity"}]})";
  const std::string ours = R"({"input": [3, 8, 8], "layers": [
      {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": false},
      {"type": "batchnorm2d", "num_features": 4}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
      {"type": "identity"}, {"type": "leaky_relu", "negative_slope": 0.2}, {"type": "avgpool2d", "kernel_size": 2},
      {"type": "global_avgpool"}, {"type": "flatten"}, {"type": "identity"}, {"type": "linear", "out_features": 3},
      {"type": "tanh"}, {"type": "sigmoid"}, {"type": "gelu"}, {"type": "silu"}, {"type": "elu"},
      {"type": "softplus"}, {"type": "identity"}]})";
  const ModelSpec a = parse_model_spec(torch), b = parse_model_spec(ours);
  // the same spec: the JSON written back (every field explicit) is the same text, apart from in_channels
  // and in_features, which PyTorch writes and xntk then checks
  std::string ja = model_spec_to_json(a);
  for (const std::string field : {"\"in_channels\":3,", "\"in_features\":4,"}) {
    const size_t at = ja.find(field);
    REQUIRE(at != std::string::npos);
    ja.erase(at, field.size());
  }
  CHECK(ja == model_spec_to_json(b));
  const Sequential<double> net(a, 0);
  CHECK(net.output_shape() == Shape{3});
}

TEST_CASE("model JSON: a misspelt type gets the nearest name, and Dropout and AdaptiveAvgPool2d are checked",
          "[io][names][errors]") {
  const std::string head = R"({"input": [2, 4, 4], "layers": [)";
  CHECK_THAT(error_of(head + R"({"type": "Conv2D", "out_channels": 2, "kernel_size": 1}]})"),
             Contains("net.json: layer 0: unknown layer type \"Conv2D\" (did you mean \"conv2d\"?)") &&
                 Contains("PyTorch's class name ("));
  CHECK_THAT(error_of(head + R"({"type": "BatchNorm"}]})"), Contains("(did you mean \"batchnorm2d\"?)"));
  CHECK_THAT(error_of(head + R"({"type": "Relu"}]})"), Contains("(did you mean \"relu\"?)"));
  CHECK_THAT(error_of(head + R"({"type": "MaxPool"}]})"), Contains("(did you mean \"maxpool2d\"?)"));
  const std::string far = error_of(head + R"({"type": "TransformerEncoder"}]})");
  CHECK_THAT(far, Contains("unknown layer type \"TransformerEncoder\"; expected a type of docs/cli.md"));
  CHECK_THAT(far, !Contains("did you mean"));
  CHECK_THAT(error_of(head + R"({"type": "Dropout", "p": 0.5, "training": true}]})"),
             Contains("layer 0 (Dropout): field \"training\"") && Contains("random"));
  CHECK_THAT(error_of(R"({"input": [2, 4, 4], "training": true, "layers": [{"type": "Dropout2d"}]})"),
             Contains("layer 0 (Dropout2d): field \"training\" (inherited from the model): expected false"));
  CHECK_THAT(error_of(head + R"({"type": "dropout", "p": 1.5}]})"),
             Contains("layer 0 (dropout): field \"p\": expected a probability in [0, 1], got 1.5"));
  for (const char* bad : {"0", "-2", "[2]", "[2, 3, 4]", "\"2\"", "[2, 0]", "1.5"})
    CHECK_THAT(error_of(head + R"({"type": "AdaptiveAvgPool2d", "output_size": )" + bad + "}]}"),
               Contains("layer 0 (AdaptiveAvgPool2d): field \"output_size\": expected a positive integer or [h, w]"));
  CHECK_THAT(error_of(head + R"({"type": "AdaptiveAvgPool2d", "output_size": 4294967296}]})"),
             Contains("at most 2147483647"));
  CHECK_THAT(error_of(head + R"({"type": "AdaptiveAvgPool2d"}]})"), Contains("missing field \"output_size\""));
  // output sizes parse as PyTorch's: an integer for both, null for the input's size; 1 is global pooling
  const ModelSpec pools = parse_model_spec(head + R"({"type": "AdaptiveAvgPool2d", "output_size": [3, null]},
      {"type": "adaptive_avgpool2d", "output_size": 2}, {"type": "AdaptiveAvgPool2d", "output_size": [1, 1]}]})");
  CHECK(std::get<AdaptiveAvgPool2d>(pools.layers[0]).output_size == Size2(3, 0));
  CHECK(std::get<AdaptiveAvgPool2d>(pools.layers[1]).output_size == Size2(2));
  CHECK(std::holds_alternative<GlobalAvgPool>(pools.layers[2]));
  CHECK(parse_model_spec(model_spec_to_json(pools)).layers.size() == 3);
  CHECK(model_spec_to_json(parse_model_spec(model_spec_to_json(pools))) == model_spec_to_json(pools));
}

TEST_CASE("model JSON: LayerNorm's fields", "[io][names][errors][layernorm]") {
  const std::string head = R"({"input": [2, 4, 4], "layers": [)";
  const ModelSpec spec = parse_model_spec(head + R"({"type": "LayerNorm", "normalized_shape": [4, 4], "eps": 0.001},
      {"type": "layernorm", "normalized_shape": 4, "elementwise_affine": false}, {"type": "LayerNorm",
      "normalized_shape": [2, 4, 4], "bias": false}]})");
  const auto& a = std::get<LayerNorm>(spec.layers[0]);
  CHECK(a.normalized_shape == Shape{4, 4});
  CHECK(a.eps == 0.001);
  CHECK((a.elementwise_affine && a.bias));
  CHECK(std::get<LayerNorm>(spec.layers[1]).normalized_shape == Shape{4});
  CHECK(!std::get<LayerNorm>(spec.layers[1]).elementwise_affine);
  CHECK(!std::get<LayerNorm>(spec.layers[2]).bias);
  CHECK(model_spec_to_json(parse_model_spec(model_spec_to_json(spec))) == model_spec_to_json(spec));
  std::vector<std::string> params;
  for (const auto& q : Sequential<double>(spec, 0).named_parameters()) params.push_back(q.name);
  CHECK(params == std::vector<std::string>{"0.weight", "0.bias", "2.weight"});

  CHECK_THAT(error_of(head + R"({"type": "LayerNorm"}]})"),
             Contains("layer 0 (LayerNorm): missing field \"normalized_shape\""));
  for (const char* bad : {"[]", "0", "[4, -1]", "\"4\"", "[4, 4.5]"})
    CHECK_THAT(error_of(head + R"({"type": "LayerNorm", "normalized_shape": )" + bad + "}]}"),
               Contains("layer 0 (LayerNorm): field \"normalized_shape\": expected a positive integer or a non-empty "
                        "array"));
  CHECK_THAT(error_of(head + R"({"type": "LayerNorm", "normalized_shape": 4, "eps": 0}]})"),
             Contains("field \"eps\": expected a positive number"));
  CHECK_THAT(error_of(head + R"({"type": "LayerNorm", "normalized_shape": 4, "affine": true}]})"),
             Contains("unknown field \"affine\""));
  CHECK_THAT(error_of(head + R"({"type": "LayerNorm", "normalized_shape": [3, 4]}]})"),
             Contains("layer 0 (layernorm): normalized_shape (3, 4) is not the trailing part of the input shape"));
}

TEST_CASE("Dropout in eval mode is the identity: the same kernel as without it", "[names][dropout]") {
  const ModelSpec with = parse_model_spec(R"({"input": [4], "layers": [{"type": "Linear", "out_features": 5},
      {"type": "Dropout", "p": 0.3}, {"type": "Tanh"}, {"type": "Linear", "out_features": 2}]})");
  const ModelSpec without{.input = {4},
                          .layers = {Linear{.out_features = 5}, Identity(), Tanh(), Linear{.out_features = 2}}};
  const Sequential<double> a(with, 3), b(without, 3);
  const auto x = test::randn<double>({3, 4}, 1);
  CHECK(test::rel_error(ntk(a, x).total, ntk(b, x).total) == 0);
}

TEST_CASE("module names: parameters named as a torchvision BasicBlock's state_dict", "[names][blocks]") {
  // torchvision's BasicBlock with a downsample, as the exporter writes it: a Sequential "layer1" holding block
  // "0" = a Residual without a level of its own (body_name ""), its shortcut "downsample", then the ReLU
  const std::string text = R"({"input": [2, 6, 6], "layers": [
      {"type": "Conv2d", "name": "conv1", "out_channels": 3, "kernel_size": 3, "padding": 1, "bias": false},
      {"type": "BatchNorm2d", "name": "bn1"}, {"type": "ReLU", "name": "relu"},
      {"type": "Sequential", "name": "layer1", "layers": [
        {"type": "Sequential", "layers": [
          {"type": "Residual", "name": "", "body_name": "", "shortcut_name": "downsample",
           "body": [{"type": "Conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "stride": 2,
                     "padding": 1, "bias": false},
                    {"type": "BatchNorm2d", "name": "bn1"}, {"type": "ReLU", "name": "relu"},
                    {"type": "Conv2d", "name": "conv2", "out_channels": 4, "kernel_size": 3, "padding": 1,
                     "bias": false},
                    {"type": "BatchNorm2d", "name": "bn2"}],
           "shortcut": [{"type": "Conv2d", "out_channels": 4, "kernel_size": 1, "stride": 2, "bias": false},
                        {"type": "BatchNorm2d"}]},
          {"type": "ReLU"}]}]},
      {"type": "AdaptiveAvgPool2d", "name": "avgpool", "output_size": 1}, {"type": "Flatten"},
      {"type": "Linear", "name": "fc", "out_features": 3}]})";
  const ModelSpec spec = parse_model_spec(text);
  const Sequential<double> net(spec, 4);
  CHECK(names_of(net.named_parameters()) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                                 "layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.conv2.weight",
                                 "layer1.0.bn2.weight", "layer1.0.bn2.bias", "layer1.0.downsample.0.weight",
                                 "layer1.0.downsample.1.weight", "layer1.0.downsample.1.bias", "fc.weight", "fc.bias"});
  CHECK(names_of(net.named_buffers()).front() == "bn1.running_mean");
  CHECK(names_of(net.named_buffers()).back() == "layer1.0.downsample.1.num_batches_tracked");
  CHECK(net.component_names().front() == "fc.weight");
  CHECK(net.component_names().back() == "conv1.weight");
  // the names survive the JSON written back
  CHECK(names_of(Sequential<double>(parse_model_spec(model_spec_to_json(spec)), 4).named_parameters()) ==
        names_of(net.named_parameters()));
  // names change names only: the same model without them has the same kernel, and autograd agrees
  test::randomize_norms(net, 2);
  const auto x1 = test::randn<double>({3, 2, 6, 6}, 5), x2 = test::randn<double>({2, 2, 6, 6}, 6);
  test::compare_with_autograd(net, x1, x2, 1e-10);
  // and the weights file uses them
  test::TempDir dir("names");
  save_weights(net, dir / "w.safetensors");
  Sequential<double> other(spec, 9);
  load_weights(other, dir / "w.safetensors");
  CHECK(test::rel_error(ntk(other, x1).total, ntk(net, x1).total) == 0);
}

TEST_CASE("module names: repeated, empty or malformed names are refused, naming the layer", "[names][errors]") {
  const Linear l{.out_features = 2};
  CHECK_THROWS_WITH(Sequential<double>({.input = {3}, .layers = {named("a", l), ReLU(), named("a", l)}}),
                    Contains("two parameters are named \"a.weight\""));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3}, .layers = {named("", l)}}),
                    Contains("layer 0 (linear): an empty name is for blocks only"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3}, .layers = {named("fc..1", l)}}),
                    Contains("layer 0 (linear): name \"fc..1\" is not a module name"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3}, .layers = {named("fc 1", l)}}), Contains("not a module name"));
  CHECK_THROWS_WITH(
      Sequential<double>({.input = {3}, .layers = {Residual{.body = {l}, .shortcut = {}, .body_name = "x/y"}}}),
      Contains("layer 0 (residual): branch name \"x/y\""));
  // an unnamed block's children can collide with its siblings: said so
  CHECK_THROWS_WITH(
      Sequential<double>({.input = {3}, .layers = {l, named("", SequentialBlock{{Linear{.out_features = 3}}})}}),
      Contains("two parameters are named \"0.weight\""));
  CHECK_THROWS_WITH(parse_model_spec(R"({"input": [3], "layers": [{"type": "relu", "name": 3}]})", "m.json"),
                    Contains("m.json: layer 0: field \"name\": expected a string"));
  CHECK_THROWS_WITH(parse_model_spec(R"({"input": [3], "layers": [{"type": "residual", "body": [{"type": "relu"}],
                                                      "body_name": false}]})"),
                    Contains("field \"body_name\": expected a string"));
}
