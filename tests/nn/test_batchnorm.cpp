// BatchNorm2d and BatchNorm1d (eval mode): backward and gradient against finite differences of the forward,
// explicit = autograd on models that contain them, their buffers (names, defaults, weights files), and the
// modes that are refused (training, batch statistics).
#include <catch2/catch.hpp>

#include "../files.hpp"
#include "layer_check.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

void randomized(Sequential<double>& net) { test::randomize_norms(net, 9); }

}  // namespace

TEST_CASE("BatchNorm: backward and gradient match finite differences", "[nn][batchnorm]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  test::check_layer(BatchNorm2d{}, {3, 4, 5}, p, 1, randomized);
  test::check_layer(BatchNorm2d{.num_features = 2, .eps = 0.1, .affine = false}, {2, 3, 3}, p, 2, randomized);
  test::check_layer(BatchNorm1d{}, {6}, p, 3, randomized);
  test::check_layer(BatchNorm1d{.eps = 1e-3}, {4, 7}, p, 4, randomized);
}

TEST_CASE("BatchNorm: the eval-mode forward is PyTorch's formula", "[nn][batchnorm]") {
  Sequential<double> net({.input = {2, 1, 3}, .layers = {BatchNorm2d{.eps = 0.5}}}, 0);
  net.parameter("0.weight")[0] = 2, net.parameter("0.weight")[1] = -1;
  net.parameter("0.bias")[0] = 0.25, net.parameter("0.bias")[1] = 3;
  net.buffer("0.running_mean")[0] = 1, net.buffer("0.running_mean")[1] = -2;
  net.buffer("0.running_var")[0] = 3.5, net.buffer("0.running_var")[1] = 0.5;
  const Tensor<double> x({1, 2, 1, 3}, {1, 2, 3, 4, 5, 6});
  const auto y = net.forward(x);
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t p = 0; p < 3; ++p) {
      const double want = (x(0, c, 0, p) - net.buffer("0.running_mean")[c]) /
                              std::sqrt(net.buffer("0.running_var")[c] + 0.5) * net.parameter("0.weight")[c] +
                          net.parameter("0.bias")[c];
      CHECK(std::abs(y(0, c, 0, p) - want) <= 1e-14 * std::abs(want));
    }
}

TEST_CASE("explicit = autograd through BatchNorm (float64, every mode)", "[nn][batchnorm][autograd]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  struct Case {
    const char* what;
    ModelSpec spec;
  };
  const std::vector<Case> cases = {
      {"conv-bn-relu, bn without affine, pooled head",
       {.input = {3, 6, 6},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 4, .kernel_size = 3, .padding = 1, .bias = false}, BatchNorm2d{}, ReLU(),
                   Conv2d{.out_channels = 5, .kernel_size = 3, .stride = 2}, BatchNorm2d{.affine = false}, Tanh(),
                   GlobalAvgPool{}, Flatten{}, Linear{.out_features = 3}}}},
      {"a residual block with BatchNorm in both branches",
       {.input = {2, 5, 5},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 4, .kernel_size = 3, .padding = 1}, BatchNorm2d{}, ReLU(),
                   Residual{
                       .body = {Conv2d{.out_channels = 4, .kernel_size = 3, .padding = 1, .bias = false}, BatchNorm2d{},
                                ReLU(), Conv2d{.out_channels = 4, .kernel_size = 3, .padding = 1, .bias = false},
                                BatchNorm2d{}},
                       .shortcut = {Conv2d{.out_channels = 4, .kernel_size = 1, .bias = false}, BatchNorm2d{}}},
                   ReLU(), Flatten{}, Linear{.out_features = 2}}}},
      {"BatchNorm1d on features and on (C, L), BatchNorm at the output",
       {.input = {6},
        .parameterization = p,
        .layers = {Linear{.out_features = 5}, BatchNorm1d{}, Tanh(), Linear{.out_features = 3}, BatchNorm1d{}}}},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const Sequential<double> net(c.spec, 3);
    test::randomize_norms(net, 4);
    Shape s1{4}, s2{3};
    s1.insert(s1.end(), c.spec.input.begin(), c.spec.input.end());
    s2.insert(s2.end(), c.spec.input.begin(), c.spec.input.end());
    test::compare_with_autograd(net, test::randn<double>(s1, 5), test::randn<double>(s2, 6), 1e-10);
  }
  const Sequential<double> seq({.input = {3, 4}, .layers = {BatchNorm1d{}, Flatten{}, Linear{.out_features = 2}}}, 1);
  test::randomize_norms(seq, 2);
  test::compare_with_autograd(seq, test::randn<double>({3, 3, 4}, 7), test::randn<double>({2, 3, 4}, 8), 1e-10);
}

TEST_CASE("BatchNorm's buffers: names, defaults, and weights files", "[nn][batchnorm][io]") {
  const ModelSpec spec{.input = {3, 4, 4},
                       .layers = {Conv2d{.out_channels = 2, .kernel_size = 3, .bias = false}, BatchNorm2d{}, ReLU(),
                                  BatchNorm2d{.affine = false}}};
  Sequential<double> net(spec, 0);
  std::vector<std::string> params, buffers;
  for (const auto& q : net.named_parameters()) params.push_back(q.name);
  for (const auto& b : net.named_buffers()) buffers.push_back(b.name);
  CHECK(params == std::vector<std::string>{"0.weight", "1.weight", "1.bias"});
  CHECK(buffers == std::vector<std::string>{"1.running_mean", "1.running_var", "1.num_batches_tracked",
                                            "3.running_mean", "3.running_var", "3.num_batches_tracked"});
  CHECK(net.component_names() == std::vector<std::string>{"1.weight", "1.bias", "0.weight"});
  CHECK(net.num_parameters() == 2 * 3 * 9 + 2 + 2);
  CHECK(net.buffer("1.running_mean")[1] == 0);
  CHECK(net.buffer("3.running_var")[0] == 1);
  CHECK(net.parameter("1.weight")[0] == 1);
  CHECK(net.parameter("1.bias")[0] == 0);
  CHECK(net.buffer("1.num_batches_tracked").shape() == Shape{});
  CHECK_THROWS_WITH(net.buffer("1.weight"), Contains("no buffer named \"1.weight\""));

  test::TempDir dir("bnweights");
  test::randomize_norms(net, 3);
  save_weights(net, dir / "w.safetensors");
  // the state_dict order: each layer's parameters, then its buffers
  std::vector<std::string> saved;
  for (const auto& t : read_safetensors<double>(dir / "w.safetensors")) saved.push_back(t.name);
  CHECK(saved == std::vector<std::string>{"0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                          "1.num_batches_tracked", "3.running_mean", "3.running_var",
                                          "3.num_batches_tracked"});
  Sequential<double> other(spec, 1);
  load_weights(other, dir / "w.safetensors");
  for (const auto& b : net.named_buffers()) CHECK(test::rel_error(other.buffer(b.name), *b.tensor) == 0);
  const auto x = test::randn<double>({2, 3, 4, 4}, 2);
  CHECK(test::rel_error(other.forward(x), net.forward(x)) == 0);

  // buffers may be absent (defaults stay), and num_batches_tracked comes as PyTorch writes it: an I64 scalar
  std::vector<NamedTensor<double>> only_params;
  for (const auto& q : net.named_parameters()) only_params.push_back({q.name, *q.tensor});
  write_safetensors(dir / "p.safetensors", only_params);
  Sequential<double> fresh(spec, 5);
  load_weights(fresh, dir / "p.safetensors");
  CHECK(fresh.buffer("1.running_var")[0] == 1);
  test::write_bytes(
      dir / "i64.safetensors",
      test::safetensors_bytes(R"({"0.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})",
                              test::le(int64_t{42})));
  Sequential<double> bn({.input = {2}, .layers = {BatchNorm1d{.affine = false}}}, 0);
  load_weights(bn, dir / "i64.safetensors");
  CHECK(bn.buffer("0.num_batches_tracked")[0] == 42);
  // integers anywhere else (a running mean, a parameter) are refused
  test::write_bytes(dir / "i64mean.safetensors",
                    test::safetensors_bytes(R"({"0.running_mean":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
                                            test::le(int64_t{1}) + test::le(int64_t{2})));
  CHECK_THROWS_WITH(
      load_weights(bn, dir / "i64mean.safetensors"),
      Contains("\"0.running_mean\" has dtype I64, expected F32 or F64") && Contains("layer 0 (batchnorm1d)"));

  // a buffer of the wrong shape or a negative variance is refused, naming the layer
  std::vector<NamedTensor<double>> bad = only_params;
  bad.push_back({"1.running_mean", Tensor<double>({3})});
  write_safetensors(dir / "bad.safetensors", bad);
  CHECK_THROWS_WITH(load_weights(fresh, dir / "bad.safetensors"),
                    Contains("\"1.running_mean\" has shape (3,), expected (2,)") && Contains("layer 1 (batchnorm2d)"));
  bad.back() = {"1.running_var", Tensor<double>({2}, -1.0)};
  write_safetensors(dir / "bad.safetensors", bad);
  CHECK_THROWS_WITH(load_weights(fresh, dir / "bad.safetensors"), Contains("negative variance"));
  bad.back() = {"1.running_stats", Tensor<double>({2})};
  write_safetensors(dir / "bad.safetensors", bad);
  CHECK_THROWS_WITH(load_weights(fresh, dir / "bad.safetensors"),
                    Contains("unexpected tensor \"1.running_stats\"") && Contains("1.running_mean"));
}

TEST_CASE("BatchNorm in training mode or with batch statistics is refused, saying why", "[nn][batchnorm][errors]") {
  CHECK_THROWS_WITH(
      Sequential<double>({.input = {3, 4, 4}, .layers = {BatchNorm2d{.training = true}}}),
      Contains("layer 0 (batchnorm2d)") && Contains("training mode") && Contains("couples") && Contains("eval"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3}, .layers = {BatchNorm1d{.track_running_stats = false}}}),
                    Contains("layer 0 (batchnorm1d)") && Contains("track_running_stats") && Contains("couples"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3, 4, 4}, .layers = {BatchNorm2d{.num_features = 4}}}),
                    Contains("num_features is 4") && Contains("3 channels"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3, 4}, .layers = {BatchNorm2d{}}}),
                    Contains("layer 0 (batchnorm2d): expects a 3-D input"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3, 4, 4}, .layers = {BatchNorm1d{}}}),
                    Contains("layer 0 (batchnorm1d): expects a 1-D (C) or 2-D (C, L) input"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3}, .layers = {BatchNorm1d{.eps = 0}}}), Contains("eps"));
  // the model JSON: per layer, or for the whole model (a model exported after model.train())
  const auto spec = parse_model_spec(
      R"({"input": [3, 4, 4], "training": true, "layers": [{"type": "batchnorm2d", "num_features": 3}]})");
  CHECK_THROWS_WITH(Sequential<double>(spec), Contains("training mode"));
  const auto eval = parse_model_spec(
      R"({"input": [3, 4, 4], "training": true, "layers": [{"type": "batchnorm2d", "training": false}]})");
  CHECK_NOTHROW(Sequential<double>(eval));
}

TEST_CASE("jacobian through BatchNorm equals the autograd path's, in component order", "[nn][batchnorm][jacobian]") {
  const ModelSpec spec{.input = {2, 4, 4},
                       .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .bias = false}, BatchNorm2d{}, ReLU(),
                                  Flatten{}, Linear{.out_features = 4}, BatchNorm1d{}, Tanh(),
                                  Linear{.out_features = 2}, BatchNorm1d{.eps = 0.01}}};
  const Sequential<double> net(spec, 3);
  test::randomize_norms(net, 5);
  const auto x = test::randn<double>({3, 2, 4, 4}, 4);
  const auto [worst, scale] = test::jacobian_gap(net, x);
  CHECK(scale > 0);
  CHECK(worst <= 1e-13 * scale);
}

TEST_CASE("training keeps BatchNorm's running statistics in θ₀ and trains only γ and β", "[nn][batchnorm][dynamics]") {
  const ModelSpec spec{.input = {3},
                       .layers = {Linear{.out_features = 4}, BatchNorm1d{}, Tanh(), Linear{.out_features = 2}}};
  Sequential<double> net(spec, 2);
  test::randomize_norms(net, 6);
  const Tensor<double> mean = net.buffer("1.running_mean"), var = net.buffer("1.running_var");
  const auto x = test::randn<double>({5, 3}, 7), y = test::randn<double>({5, 2}, 8);
  Trainer<double> t(net, {.optimizer = {.lr = 0.1}, .linearized = true});
  // θ₀ is the model with its buffers: the linearisation at θ₀ is the network there
  CHECK(test::rel_error(t.initial().forward(x), net.forward(x)) == 0);
  CHECK(test::rel_error(t.linearized_outputs(x), net.forward(x)) == 0);
  t.step(x, y);
  CHECK(test::rel_error(t.initial().forward(x), net.forward(x)) > 0);  // γ, β (and the rest) moved
  CHECK(test::rel_error(net.buffer("1.running_mean"), mean) == 0);     // the statistics did not
  CHECK(test::rel_error(net.buffer("1.running_var"), var) == 0);
}
