// engine::explicit_kernel_into: a kernel computed into the tensors a Kernel already holds (train()'s probe,
// every epoch) reuses them when the result's shape matches and equals, value for value, the kernel `ntk`
// returns afresh; a result of another shape gets new tensors of that shape.

#include <catch2/catch.hpp>

#include "../helpers.hpp"
#include "backend/backend.hpp"
#include "ntk/driver.hpp"

using namespace xntk;

namespace {

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.size(), b.data());
}

/// k equals `ntk`'s own result for x: the total, every component and the names.
void check_equals_fresh(const Kernel<double>& k, const Sequential<double>& net, const Tensor<double>& x,
                        const KernelOptions& o) {
  const Kernel<double> fresh = ntk(net, x, o);
  CHECK(same_bits(k.total, fresh.total));
  REQUIRE(k.components.size() == fresh.components.size());
  for (size_t c = 0; c < k.components.size(); ++c) CHECK(same_bits(k.components[c], fresh.components[c]));
  CHECK(k.names == fresh.names);
}

}  // namespace

TEST_CASE("a kernel computed into held tensors reuses them and equals the kernel ntk returns", "[sink]") {
  const ModelSpec spec{.input = {4}, .layers = {Linear{.out_features = 6}, Tanh(), Linear{.out_features = 3}}};
  const Sequential<double> net(spec, 1);
  const auto a = test::randn<double>({7, 4}, 2), b = test::randn<double>({7, 4}, 3), c = test::randn<double>({5, 4}, 4);
  const backend::Backend& cpu = backend::get("cpu");
  // tile 0: one tile, written in place (Sink::whole); tile 3: blocks, mirrored
  for (const int64_t tile : {0, 3})
    for (const Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
      DYNAMIC_SECTION("tile " << tile << " mode " << static_cast<int>(mode)) {
        const KernelOptions o{.mode = mode, .components = true, .tile = tile};
        Kernel<double> k;
        engine::explicit_kernel_into<double>(net, a, nullptr, o, cpu, k);
        check_equals_fresh(k, net, a, o);
        REQUIRE(k.components.size() == 4);
        std::vector<const double*> held{k.total.data()};
        for (const auto& t : k.components) held.push_back(t.data());
        // the same shape: the same storage, overwritten (nothing of a's kernel left in it)
        engine::explicit_kernel_into<double>(net, b, nullptr, o, cpu, k);
        check_equals_fresh(k, net, b, o);
        CHECK(k.total.data() == held[0]);
        for (size_t t = 0; t < k.components.size(); ++t) CHECK(k.components[t].data() == held[t + 1]);
        // fewer samples: tensors of the new shape
        engine::explicit_kernel_into<double>(net, c, nullptr, o, cpu, k);
        check_equals_fresh(k, net, c, o);
        CHECK(k.total.dim(0) == 5);
        // without components: none left over from before
        const KernelOptions total_only{.mode = mode, .tile = tile};
        engine::explicit_kernel_into<double>(net, a, nullptr, total_only, cpu, k);
        check_equals_fresh(k, net, a, total_only);
        CHECK(k.components.empty());
      }
    }
}
