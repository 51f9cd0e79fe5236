#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace xntk;

TEST_CASE("tensor: row-major indexing, shapes and errors", "[tensor]") {
  Tensor<double> t({2, 3, 4});
  REQUIRE(t.size() == 24);
  t(1, 2, 3) = 7.0;
  CHECK(t[23] == 7.0);
  t(0, 1, 0) = 5.0;
  CHECK(t[4] == 5.0);
  CHECK(t.reshaped({6, 4})(1, 0) == 5.0);
  CHECK_THROWS_AS(t(2, 0, 0), Error);
  CHECK_THROWS_AS(t(0, 0), Error);
  CHECK_THROWS_AS(t.reshaped({5, 5}), Error);
  CHECK_THROWS_AS(Tensor<float>({2, 2}, std::vector<float>{1, 2, 3}), Error);
  CHECK(to_string(Shape{3}) == "(3,)");
  CHECK(to_string(Shape{2, 5}) == "(2, 5)");
  const auto f = t.cast<float>();
  CHECK(f(1, 2, 3) == 7.0f);
}

TEST_CASE("a TensorRef reads data where it lies, for the kernel paths and the forward pass", "[tensor]") {
  const Sequential<double> net({.input = {3}, .layers = {Linear{.out_features = 2}}}, 0);
  std::vector<double> raw(4 * 3);
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = std::sin(static_cast<double>(i));
  const TensorRef<double> view(raw.data(), {4, 3});
  CHECK(view.data() == raw.data());
  const Tensor<double> copy({4, 3}, raw);
  CHECK(ntk(net, view).total.shape() == ntk(net, copy).total.shape());
  const auto a = ntk(net, view).total, b = ntk(net, copy).total;
  CHECK(std::equal(a.data(), a.data() + a.size(), b.data()));
  const auto y = net.forward(view), z = net.forward(copy);
  CHECK(std::equal(y.data(), y.data() + y.size(), z.data()));
  CHECK_THROWS_AS(TensorRef<double>(raw.data(), {4, -3}), Error);
}
