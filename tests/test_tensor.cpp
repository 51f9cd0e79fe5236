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
