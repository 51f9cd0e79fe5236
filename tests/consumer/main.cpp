// A program outside the xntk tree: computes a small NTK through the installed package.
#include <cstdio>
#include <xntk/xntk.hpp>

int main() {
  xntk::Sequential<double> net(
      {.input = {3}, .layers = {xntk::Linear{.out_features = 4}, xntk::ReLU(), xntk::Linear{.out_features = 2}}});
  xntk::Tensor<double> x({2, 3}, 0.5);
  x(1, 0) = -1.0;
  const auto k = xntk::ntk(net, x);
  std::printf("consumer: kernel shape %s, K[0,0,0,0] = %.6f\n", xntk::to_string(k.total.shape()).c_str(),
              k.total(0, 0, 0, 0));
  return k.total(0, 0, 0, 0) > 0 ? 0 : 1;
}
