// The file sink: a kernel written block by block into .npy and safetensors files equals the kernel `ntk`
// returns in memory, value for value, in every mode, with and without X2, over many tiles; its checksum is
// the documented one; a failure leaves no file under either name.

#include <catch2/catch.hpp>
#include <filesystem>

#include "../helpers.hpp"
#include "io/checksum.hpp"

using namespace xntk;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

/// A fresh, empty directory for one test case.
fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("xntk_file_sink_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> entries(const fs::path& d) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(d)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.size(), b.data());
}

ModelSpec mlp() { return {.input = {4}, .layers = {Linear{.out_features = 6}, Tanh(), Linear{.out_features = 3}}}; }

ModelSpec cnn() {
  return {.input = {2, 5, 5},
          .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}, ReLU(), Flatten{},
                     Linear{.out_features = 2}}};
}

}  // namespace

TEMPLATE_TEST_CASE("a kernel written by the file sink equals the kernel in memory, value for value", "[sink][io]",
                   float, double) {
  using T = TestType;
  const fs::path d = scratch("equal");
  int round = 0;
  for (const bool conv : {false, true}) {
    const Sequential<T> net(conv ? cnn() : mlp(), 3);
    const Shape in = net.input_shape();
    Shape s1{7}, s2{5};
    s1.insert(s1.end(), in.begin(), in.end());
    s2.insert(s2.end(), in.begin(), in.end());
    const auto x1 = test::randn<T>(s1, 1), x2 = test::randn<T>(s2, 2);
    for (const Mode mode : {Mode::full, Mode::trace, Mode::diagonal})
      for (const bool with_x2 : {false, true})
        for (const int64_t tile : {0, 2, 3}) {  // 0: one block; 2, 3: diagonal, mirrored and ragged blocks
          CAPTURE(conv, static_cast<int>(mode), with_x2, tile);
          const KernelOptions opt{.mode = mode, .components = true, .tile = tile};
          const Kernel<T> want = with_x2 ? ntk(net, x1, x2, opt) : ntk(net, x1, opt);
          const std::string k = (d / ("k" + std::to_string(round) + ".npy")).string(),
                            c = (d / ("c" + std::to_string(round) + ".safetensors")).string();
          ++round;
          FileSink<T> sink(k, c, {{"run_id", "0123456789abcdef"}});
          const Kernel<T> got = with_x2 ? ntk(net, x1, x2, opt, sink) : ntk(net, x1, opt, sink);
          CHECK(got.names == want.names);
          CHECK(got.total.size() == 0);
          sink.commit();
          const auto kernel = read_npy<T>(k);
          CHECK(same_bits(kernel, want.total));
          std::map<std::string, std::string> meta;
          const auto named = read_safetensors<T>(c, &meta);
          REQUIRE(named.size() == want.names.size() + 1);
          for (size_t i = 0; i < want.names.size(); ++i) {
            CHECK(named[i].name == want.names[i]);
            CHECK(same_bits(named[i].tensor, want.components[i]));
          }
          CHECK(named.back().name == "total");
          CHECK(same_bits(named.back().tensor, want.total));
          CHECK(meta.at("run_id") == "0123456789abcdef");
          CHECK(meta.at("kernel_checksum") == detail::kernel_checksum(want.total, sizeof(T)));
          CHECK(sink.checksum() == meta.at("kernel_checksum"));
        }
  }
  fs::remove_all(d);
}

TEST_CASE("the kernel checksum is the documented sum over positions and IEEE bits", "[sink][io]") {
  // values from tests/fuzz/make_corpus.py's checksum(), the Python transcription of docs/cli.md's formula
  const Tensor<double> k({2, 3}, std::vector<double>{0.5, -1.0, 2.25, 0.0, 1e-300, -0.0});
  CHECK(detail::kernel_checksum(k, 8) == "mix64:5154e39b94df1b48");
  const Tensor<double> kf({2, 3}, std::vector<double>{0.5, -1.0, 2.25, 0.0, 1e-30, -0.0});
  CHECK(detail::kernel_checksum(kf, 4) == "mix64:cd53ad28caa7325d");
  // position matters: the same values in another order
  const Tensor<double> swapped({2, 3}, std::vector<double>{-1.0, 0.5, 2.25, 0.0, 1e-300, -0.0});
  CHECK(detail::kernel_checksum(swapped, 8) != detail::kernel_checksum(k, 8));
}

TEST_CASE("a model without parameters gets a zero kernel file", "[sink][io]") {
  const fs::path d = scratch("zero");
  const Sequential<double> net({.input = {3}, .layers = {Tanh()}}, 0);
  const auto x = test::randn<double>({4, 3}, 1);
  FileSink<double> sink((d / "k.npy").string());
  ntk(net, x, {.mode = Mode::diagonal}, sink);
  sink.commit();
  const auto k = read_npy<double>((d / "k.npy").string());
  CHECK(same_bits(k, ntk(net, x, {.mode = Mode::diagonal}).total));
  CHECK(sink.checksum() == detail::kernel_checksum(k, 8));
  fs::remove_all(d);
}

TEST_CASE("a file sink that fails or is not committed leaves no file behind", "[sink][io][errors]") {
  const fs::path d = scratch("fail");
  const Sequential<double> net(mlp(), 0);
  const auto x = test::randn<double>({4, 4}, 1), bad = test::randn<double>({4, 5}, 2);
  const std::string k = (d / "k.npy").string(), c = (d / "c.safetensors").string();
  {
    FileSink<double> sink(k, c);
    CHECK(entries(d).size() == 2);  // the temporary files, created at once
    CHECK_THROWS_WITH(ntk(net, bad, {.components = true}, sink), Contains("x1"));
  }
  CHECK(entries(d).empty());
  {
    FileSink<double> sink(k, c);
    ntk(net, x, {.components = true}, sink);  // finished but never committed
  }
  CHECK(entries(d).empty());
  {
    FileSink<double> sink(k, c);
    CHECK_THROWS_WITH(ntk(net, x, {}, sink), Contains("components were not requested"));
  }
  CHECK(entries(d).empty());
  CHECK_THROWS_WITH(FileSink<double>(k, (d / "." / "k.npy").string()), Contains("would overwrite the kernel"));
  CHECK_THROWS_WITH(FileSink<double>((d / "missing" / "k.npy").string()), Contains("missing/k.npy"));
  {
    FileSink<double> sink(k);
    CHECK_THROWS_WITH(sink.commit(), Contains("before its end"));
  }
  CHECK(entries(d).empty());
  fs::remove_all(d);
}
