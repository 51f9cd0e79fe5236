// Composite blocks: residual blocks and nested sequentials. Their parameter names are the state_dict keys of
// the equivalent PyTorch module, their components come in the documented order, their forward is the sum
// of the branches, and the explicit kernel equals the autograd path's on random residual MLPs and CNNs.

#include <catch2/catch.hpp>

#include "../helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

Linear lin(int64_t out) { return Linear{.out_features = out}; }

Conv2d conv(int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0) {
  return Conv2d{.out_channels = out, .kernel_size = k, .stride = stride, .padding = pad};
}

}  // namespace

TEST_CASE("residual and nested blocks name parameters as PyTorch's state_dict and order components outermost first",
          "[blocks]") {
  const Sequential<double> net(
      {.input = {5},
       .layers = {lin(6), ReLU(), Residual{.body = {lin(6), ReLU(), lin(6)}, .shortcut = {lin(6)}}, Tanh(),
                  SequentialBlock{{lin(4), SequentialBlock{{Tanh(), lin(2)}}}}}},
      0);
  std::vector<std::string> names;
  for (const auto& p : net.named_parameters()) names.push_back(p.name);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "2.body.0.weight", "2.body.0.bias", "2.body.2.weight",
                                          "2.body.2.bias", "2.shortcut.0.weight", "2.shortcut.0.bias", "4.0.weight",
                                          "4.0.bias", "4.1.1.weight", "4.1.1.bias"});
  // the modules that own parameters in state_dict order, reversed, weight before bias within each
  CHECK(net.component_names() == std::vector<std::string>{"4.1.1.weight", "4.1.1.bias", "4.0.weight", "4.0.bias",
                                                          "2.shortcut.0.weight", "2.shortcut.0.bias", "2.body.2.weight",
                                                          "2.body.2.bias", "2.body.0.weight", "2.body.0.bias",
                                                          "0.weight", "0.bias"});
  const auto x = test::randn<double>({3, 5}, 1);
  CHECK(ntk(net, x).names == net.component_names());
  CHECK(autograd_ntk(net, x).names == net.component_names());
  CHECK(net.num_layers() == 5);
  CHECK(net.layer_output_shape(2) == Shape{6});
  CHECK(net.output_shape() == Shape{2});
}

TEST_CASE("a residual block's forward is the sum of its branches", "[blocks]") {
  // the same weights in three models: the block, its body alone and its shortcut alone
  const std::vector<LayerSpec> body = {conv(4, 3, 1, 1), ReLU(), conv(4, 3, 1, 1)}, shortcut = {conv(4, 1)};
  const Sequential<double> block({.input = {3, 6, 5}, .layers = {Residual{body, shortcut}}}, 3);
  const Sequential<double> b({.input = {3, 6, 5}, .layers = body}, 0), s({.input = {3, 6, 5}, .layers = shortcut}, 0);
  for (const auto& p : b.named_parameters()) b.parameter(p.name) = block.parameter("0.body." + p.name);
  for (const auto& p : s.named_parameters()) s.parameter(p.name) = block.parameter("0.shortcut." + p.name);
  const auto x = test::randn<double>({2, 3, 6, 5}, 2);
  const auto y = block.forward(x), yb = b.forward(x), ys = s.forward(x);
  double worst = 0;
  for (int64_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::abs(y[i] - (yb[i] + ys[i])));
  CHECK(worst <= 1e-14);
  // the identity shortcut adds the input itself
  const Sequential<double> identity({.input = {4}, .layers = {Residual{.body = {lin(4)}, .shortcut = {}}}}, 5);
  const Sequential<double> alone({.input = {4}, .layers = {lin(4)}}, 5);
  const auto x2 = test::randn<double>({3, 4}, 3);
  const auto y2 = identity.forward(x2), a2 = alone.forward(x2);
  for (int64_t i = 0; i < y2.size(); ++i) CHECK(y2[i] == a2[i] + x2[i]);
}

TEST_CASE("a residual block whose branches disagree names itself and both shapes", "[blocks][errors]") {
  CHECK_THROWS_WITH(Sequential<double>({.input = {5}, .layers = {lin(3), Residual{.body = {lin(4)}, .shortcut = {}}}}),
                    Contains("layer 1 (residual)") && Contains("(4,)") && Contains("(3,)"));
  CHECK_THROWS_WITH(
      Sequential<double>({.input = {2, 6, 6}, .layers = {Residual{.body = {conv(3, 3)}, .shortcut = {conv(3, 1)}}}}),
      Contains("layer 0 (residual)") && Contains("(3, 4, 4)") && Contains("(3, 6, 6)"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {5}, .layers = {Residual{}}}), Contains("layer 0 (residual)"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {5}, .layers = {SequentialBlock{}}}),
                    Contains("layer 0 (sequential): no layers"));
  // errors inside a block name the layer by its module path
  CHECK_THROWS_WITH(
      Sequential<double>({.input = {5}, .layers = {Residual{.body = {lin(5), Flatten{}, conv(2, 1)}, .shortcut = {}}}}),
      Contains("layer 0.body.2 (conv2d)"));
}

TEST_CASE("explicit = autograd on random residual MLPs (float64, every mode)", "[blocks]") {
  using P = Parameterization;
  const std::vector<ModelSpec> specs = {
      // identity shortcut between ReLUs (the ReLU below gates the body's first backward)
      {.input = {5},
       .layers = {lin(6), ReLU(), Residual{.body = {lin(8), ReLU(), lin(6)}, .shortcut = {}}, ReLU(), lin(3)}},
      // projection shortcut, ntk parameterisation
      {.input = {4},
       .parameterization = P::ntk,
       .layers = {lin(6), Tanh(), Residual{.body = {lin(5), GELU(), lin(7)}, .shortcut = {lin(7)}}, lin(2)}},
      // a block first (its input deltas are not needed) and a block last (identity deltas at its output)
      {.input = {6},
       .layers = {Residual{.body = {lin(6), ReLU(), lin(6)}, .shortcut = {Tanh()}}, Sigmoid(),
                  Residual{.body = {lin(3)}, .shortcut = {lin(3)}}}},
      // a block inside a block, a nested sequential, and a block without parameters
      {.input = {5},
       .parameterization = P::ntk,
       .layers = {lin(5), ReLU(),
                  Residual{.body = {Residual{.body = {lin(5), ReLU(), lin(5)}, .shortcut = {}},
                                    SequentialBlock{{Tanh(), lin(5)}}},
                           .shortcut = {}},
                  Residual{.body = {Tanh()}, .shortcut = {}}, lin(4)}},
      // a body ending in an activation, a shortcut without bias
      {.input = {5},
       .layers = {lin(6), ReLU(), Residual{.body = {lin(7), ReLU(), lin(6)}, .shortcut = {}}, ReLU(),
                  Residual{.body = {lin(4), Tanh()}, .shortcut = {Linear{.out_features = 4, .bias = false}}}, lin(3)}},
      // shared deltas through a block: linear maps only above, so both branches see the same rows
      {.input = {4}, .layers = {lin(6), Tanh(), Residual{.body = {lin(6)}, .shortcut = {lin(6)}}, lin(6), lin(3)}},
  };
  for (const auto& spec : specs) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 11);
    const auto x1 = test::randn<double>({4, spec.input[0]}, 1), x2 = test::randn<double>({3, spec.input[0]}, 2);
    test::compare_with_autograd(net, x1, x2, 1e-10);
  }
}

TEST_CASE("explicit = autograd on random residual CNNs (float64, every mode)", "[blocks][cnn]") {
  const std::vector<ModelSpec> specs = {
      // a ResNet basic block with the identity, and one with a strided 1x1 projection
      {.input = {3, 8, 8},
       .layers = {conv(4, 3, 1, 1), ReLU(),
                  Residual{.body = {conv(4, 3, 1, 1), ReLU(), conv(4, 3, 1, 1)}, .shortcut = {}}, ReLU(),
                  Residual{.body = {conv(6, 3, 2, 1), ReLU(), conv(6, 3, 1, 1)}, .shortcut = {conv(6, 1, 2)}}, ReLU(),
                  GlobalAvgPool{}, Flatten{}, lin(3)}},
      // pooling inside the body, ntk parameterisation, the block feeding the head directly
      {.input = {2, 7, 7},
       .parameterization = Parameterization::ntk,
       .layers = {conv(3, 2), Tanh(),
                  Residual{.body = {conv(3, 3, 1, 1), MaxPool2d{.kernel_size = 3, .stride = 1, .padding = 1}},
                           .shortcut = {AvgPool2d{.kernel_size = 1}}},
                  Flatten{}, lin(2)}},
  };
  for (const auto& spec : specs) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 4);
    Shape s1{3}, s2{2};
    s1.insert(s1.end(), spec.input.begin(), spec.input.end());
    s2.insert(s2.end(), spec.input.begin(), spec.input.end());
    test::compare_with_autograd(net, test::randn<double>(s1, 5), test::randn<double>(s2, 6), 1e-10);
  }
}

TEST_CASE("residual and sequential blocks round-trip through the model JSON", "[blocks][io]") {
  const std::string text = R"({"input": [4], "layers": [
      {"type": "linear", "out_features": 4},
      {"type": "residual", "body": [{"type": "relu"}, {"type": "linear", "out_features": 4}],
       "shortcut": [{"type": "linear", "out_features": 4, "bias": false}]},
      {"type": "residual", "body": [{"type": "tanh"}]},
      {"type": "sequential", "layers": [{"type": "linear", "out_features": 2}]}]})";
  const ModelSpec spec = parse_model_spec(text, "m.json");
  REQUIRE(spec.layers.size() == 4);
  const auto& r = std::get<Residual>(spec.layers[1]);
  CHECK(r.body.size() == 2);
  CHECK(r.shortcut.size() == 1);
  CHECK(std::get<Residual>(spec.layers[2]).shortcut.empty());
  CHECK(std::get<SequentialBlock>(spec.layers[3]).layers.size() == 1);
  const ModelSpec again = parse_model_spec(model_spec_to_json(spec), "again");
  CHECK(model_spec_to_json(again) == model_spec_to_json(spec));
  const Sequential<double> net(again, 0);
  CHECK(net.component_names() == std::vector<std::string>{"3.0.weight", "3.0.bias", "1.shortcut.0.weight",
                                                          "1.body.1.weight", "1.body.1.bias", "0.weight", "0.bias"});

  auto error = [](const std::string& layers) {
    try {
      parse_model_spec(R"({"input": [4], "layers": [)" + layers + "]}", "m.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error(R"({"type": "residual"})"), Contains("m.json: layer 0 (residual): missing field \"body\""));
  CHECK_THAT(error(R"({"type": "residual", "body": []})"), Contains("field \"body\": expected a non-empty array"));
  CHECK_THAT(error(R"({"type": "residual", "body": [{"type": "relu"}], "shortcut": 3})"),
             Contains("field \"shortcut\": expected an array"));
  CHECK_THAT(error(R"({"type": "residual", "body": [{"type": "relu"}], "short": []})"),
             Contains("unknown field \"short\""));
  CHECK_THAT(error(R"({"type": "sequential", "layers": [{"type": "relu"}, {"type": "linear"}]})"),
             Contains("m.json: layer 0.1 (linear): missing field \"out_features\""));
  CHECK_THAT(error(R"({"type": "residual", "body": [{"type": "residual", "body": [{"type": "lin"}]}]})"),
             Contains("m.json: layer 0.body.0.body.0: unknown layer type \"lin\""));
}

TEST_CASE("Sequential::copy has the same parameters and buffers, computes the same, and is independent",
          "[blocks][model]") {
  for (const Parameterization p : {Parameterization::standard, Parameterization::ntk}) {
    INFO(name(p));
    Sequential<double> net(
        {.input = {2, 5, 5},
         .parameterization = p,
         .layers = {conv(3, 3, 1, 1), BatchNorm2d{}, ReLU(),
                    Residual{.body = {conv(3, 3, 1, 1), BatchNorm2d{}}, .shortcut = {}}, Flatten{}, lin(4)}},
        7);
    // buffers that a fresh model of any seed would not have: BatchNorm's running statistics set by hand
    for (const auto& b : net.named_buffers())
      for (int64_t i = 0; i < b.tensor->size(); ++i) (*b.tensor)[i] = 0.25 + 0.5 * static_cast<double>(i + 1);
    const Sequential<double> c = net.copy();
    const auto pn = net.named_parameters(), pc = c.named_parameters();
    REQUIRE(pn.size() == pc.size());
    for (size_t i = 0; i < pn.size(); ++i) {
      CHECK(pc[i].name == pn[i].name);
      CHECK(pc[i].tensor->shape() == pn[i].tensor->shape());
      CHECK(pc[i].tensor->data() != pn[i].tensor->data());
      CHECK(std::equal(pn[i].tensor->data(), pn[i].tensor->data() + pn[i].tensor->size(), pc[i].tensor->data()));
    }
    const auto bn = net.named_buffers(), bc = c.named_buffers();
    REQUIRE(bn.size() == bc.size());
    REQUIRE(!bn.empty());
    for (size_t i = 0; i < bn.size(); ++i)
      CHECK(std::equal(bn[i].tensor->data(), bn[i].tensor->data() + bn[i].tensor->size(), bc[i].tensor->data()));
    for (int i = 0; i < net.num_layers(); ++i) CHECK(c.multipliers(i) == net.multipliers(i));
    const auto x = test::randn<double>({3, 2, 5, 5}, 8);
    const Tensor<double> a = net.forward(x), b = c.forward(x);
    CHECK(std::equal(a.data(), a.data() + a.size(), b.data()));
    // independent: changing the original leaves the copy as it was
    const double before = (*pc[0].tensor)[0];
    (*pn[0].tensor)[0] += 1;
    CHECK((*pc[0].tensor)[0] == before);
  }
}
