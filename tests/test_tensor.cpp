#include <catch2/catch.hpp>
#include <limits>

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
  CHECK_THROWS_AS(Tensor<float>({-1, -1}, std::vector<float>{1}), Error);
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

TEST_CASE("tensor: sizes that overflow int64 are errors, long shapes print short", "[tensor][errors]") {
  using Catch::Matchers::Contains;
  const int64_t big = int64_t{1} << 40;
  // 2^80 wrapped to 0 elements before numel was checked
  CHECK_THROWS_WITH(numel({big, big}), Contains("(1099511627776, 1099511627776)") && Contains("overflows"));
  CHECK_THROWS_WITH(Tensor<double>({big, big, 0}), Contains("overflows"));
  CHECK_THROWS_AS(numel({int64_t{3}, std::numeric_limits<int64_t>::max()}), Error);
  CHECK(numel({big, 0, big}) == 0);  // the product so far never overflows
  CHECK(numel({std::numeric_limits<int64_t>::max(), 1}) == std::numeric_limits<int64_t>::max());

  CHECK(to_string(Shape(16, 7)) == "(7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7)");
  Shape rank10k(10000, 1);
  rank10k.back() = 5;
  CHECK(to_string(rank10k) == "(1, 1, 1, 1, 1, 1, 1, 1, ..., 5; 10000 dimensions)");
}
