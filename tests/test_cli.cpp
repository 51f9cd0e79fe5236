// The `xntk` program, run as a user would: a table of bad inputs (exit code, one stderr line naming the
// file/field/layer, nothing left in the output directory) and the outputs of good runs.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "cli_run.hpp"
#include "files.hpp"
#include "helpers.hpp"
#include "io/checksum.hpp"
#include "io/mapped.hpp"

using namespace xntk;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

using test::Run;
using test::run;

int64_t lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

const ModelSpec kSpec{.input = {4}, .layers = {Linear{.out_features = 3}, ReLU(), Linear{.out_features = 2}}};

/// The inputs every case can use, good and bad, written into `d`.
void write_inputs(const test::TempDir& d) {
  using test::npy_bytes;
  using test::raw;
  using test::safetensors_bytes;
  using test::write_bytes;
  save_model_spec(d / "model.json", kSpec);
  write_bytes(d / "broken.json", R"({"input": [4], "layers": [{"type": "relu"},)");
  write_bytes(d / "lstm.json",
              R"({"input": [4], "layers": [{"type": "linear", "out_features": 2}, {"type": "lstm"}]})");
  write_bytes(d / "inplace.json",
              R"({"input": [4], "layers": [{"type": "linear", "out_features": 2, "inplace": true}]})");
  write_bytes(d / "chain.json", R"({"input": [4], "layers": [{"type": "linear", "out_features": 3}, {"type": "relu"},
                                   {"type": "linear", "out_features": 2, "in_features": 5}]})");
  write_bytes(d / "cnn.json", R"({"input": [4], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3}]})");
  write_bytes(d / "deep.json", R"({"input": [4], "layers": [{"type": "linear", "out_features": )" +
                                   std::string(100000, '[') + std::string(100000, ']') + "}]}");
  write_bytes(d / "bignum.json",
              R"({"input": [4], "layers": [{"type": "linear", "out_features": 2, "w_std": 1e400}]})");
  write_bytes(d / "huge_input.json", R"({"input": [4611686018427387904], "layers": [{"type": "relu"}]})");
  write_bytes(d / "huge_padding.json", R"({"input": [1, 4, 4], "layers": [{"type": "conv2d", "out_channels": 2,
                                          "kernel_size": 3, "padding": 4294967296}]})");
  // blocks nest as JSON does, two levels each ({"layers": [...]}): 40 of them pass the JSON depth limit
  std::string blocks = R"({"type": "relu"})";
  for (int i = 0; i < 40; ++i) blocks = R"({"type": "sequential", "layers": [)" + blocks + "]}";
  write_bytes(d / "deep_blocks.json", R"({"input": [4], "layers": [)" + blocks + "]}");
  // weights of 2^62 bytes: refused before they are allocated, naming the layer
  write_bytes(d / "huge_weights.json", R"({"input": [2147483647], "layers": [{"type": "relu"},
                                          {"type": "linear", "out_features": 2147483647}]})");
  write_bytes(d / "huge_residual.json", R"({"input": [1, 8, 8], "layers": [{"type": "residual", "body": [
      {"type": "conv2d", "out_channels": 2147483647, "kernel_size": 8, "padding": 0}], "shortcut": [
      {"type": "conv2d", "out_channels": 2147483647, "kernel_size": 8}]}]})");
  write_bytes(d / "twice.json",
              R"({"input": [4], "layers": [{"type": "linear", "out_features": 2, "out_features": 3}]})");
  write_npy(d / "x.npy", test::randn<double>({5, 4}, 1));
  write_npy(d / "x2.npy", test::randn<double>({3, 4}, 2));
  write_npy(d / "x5.npy", test::randn<double>({3, 5}, 3));
  auto nan = test::randn<double>({2, 4}, 4);
  nan(1, 2) = NAN;
  write_npy(d / "xnan.npy", nan);
  auto inf = test::randn<double>({2, 4}, 5);
  inf(0, 3) = -INFINITY;
  write_npy(d / "xinf.npy", inf);
  auto big = test::randn<double>({2, 4}, 6);
  big(0, 0) = 1e300;
  write_npy(d / "xbig.npy", big);
  write_bytes(d / "xint.npy", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 4), }",
                                        raw(std::vector<int64_t>(8, 1))));
  write_bytes(d / "xtrunc.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (5, 4), }",
                                          raw(std::vector<double>(7, 1.0))));
  write_bytes(d / "xtext.npy", "1,2,3,4\n5,6,7,8\n");
  // weights: good, and each way of being wrong
  Sequential<double> net(kSpec, 7);
  save_weights(net, d / "w.safetensors");
  std::vector<NamedTensor<double>> all;
  for (const auto& p : net.named_parameters()) all.push_back({p.name, *p.tensor});
  write_safetensors(d / "w_missing.safetensors", std::vector<NamedTensor<double>>(all.begin(), all.end() - 1));
  auto extra = all;
  extra.push_back({"3.weight", Tensor<double>({2, 2})});
  write_safetensors(d / "w_extra.safetensors", extra);
  auto shaped = all;
  shaped[2].tensor = Tensor<double>({3, 2});
  write_safetensors(d / "w_shape.safetensors", shaped);
  write_bytes(d / "w_int.safetensors",
              safetensors_bytes(R"({"0.weight":{"dtype":"I64","shape":[3,4],"data_offsets":[0,96]}})",
                                raw(std::vector<int64_t>(12, 0))));
  write_bytes(d / "w_hdrlen.safetensors", test::le(static_cast<uint64_t>(1) << 50) + "{}");
  write_bytes(d / "w_offsets.safetensors",
              safetensors_bytes(R"({"0.weight":{"dtype":"F64","shape":[3,4],"data_offsets":[0,96]}})",
                                raw(std::vector<double>(4, 0.0))));
  // kernels for analyze
  write_npy(d / "k_rect.npy", Tensor<double>({3, 2}));
  Tensor<double> k({2, 2});
  k(0, 0) = 2;
  k(1, 1) = 1;
  write_npy(d / "k.npy", k);
  write_safetensors(d / "c_shape.safetensors", std::vector<NamedTensor<double>>{{"0.weight", Tensor<double>({3, 3})}});
  // components of another run: their total is this kernel, but the checksum they record is not its
  write_safetensors(d / "c_other.safetensors", std::vector<NamedTensor<double>>{{"0.weight", k}, {"total", k}},
                    {{"run_id", "00000000000000ff"}, {"kernel_checksum", "mix64:0123456789abcdef"}});
  std::filesystem::create_directories(d.path() / "adir");
  // hostile inputs: kernels without outputs, nesting that overflowed the stack, a FIFO that blocks its opener
  write_npy(d / "k_noout4.npy", Tensor<double>({2, 2, 0, 0}));
  write_npy(d / "k_noout3.npy", Tensor<double>({2, 2, 0}));
  write_bytes(d / "deep.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': " + std::string(50000, '(') +
                                            std::string(50000, ')') + "}",
                                        "", 2));
  write_bytes(d / "w_deep.safetensors",
              safetensors_bytes(R"({"0.weight":{"dtype":"F64","shape":)" + std::string(100000, '[') +
                                    std::string(100000, ']') + R"(,"data_offsets":[0,96]}})",
                                raw(std::vector<double>(12, 0.0))));
  REQUIRE(mkfifo((d / "fifo").c_str(), 0600) == 0);
}

struct Case {
  std::string args;
  int code;
  std::vector<std::string> says;
};

// Each case runs from a directory holding the inputs above; outputs go to k.npy / c.safetensors there.
const std::vector<Case> kCases = {
    // usage errors (exit code 2)
    {"compute model.json --x1 x.npy -o k.npy --frobnicate", 2, {"--frobnicate"}},
    {"compute model.json --x1 x.npy -o k.npy --mode fast", 2, {"--mode", "fast"}},
    {"compute model.json --x1 x.npy -o k.npy --dtype float16", 2, {"--dtype", "float16"}},
    {"compute model.json --x1 x.npy -o k.npy --method magic", 2, {"--method"}},
    {"compute model.json -o k.npy", 2, {"--x1"}},
    {"compute model.json --x1 x.npy", 2, {"output"}},
    {"compute --x1 x.npy -o k.npy", 2, {"model"}},
    {"compute model.json --x1 x.npy -o k.npy --threads -2", 2, {"--threads"}},
    {"compute model.json --x1 x.npy -o k.npy --seed abc", 2, {"--seed"}},
    {"compute model.json --x1 x.npy -o k.npy --components k.npy", 2, {"-o and --components", "k.npy"}},
    {"", 2, {"subcommand"}},
    {"transmogrify", 2, {"transmogrify"}},
    {"analyze k.npy --json --verbose", 2, {"--verbose"}},
    {"compute model.json --x1 x.npy -o ''", 2, {"--output", "empty"}},
    {"compute model.json --x1 '' -o k.npy", 2, {"--x1", "empty"}},
    {"compute model.json --x1 x.npy --components '' -o k.npy", 2, {"--components", "empty"}},
    {"analyze ''", 2, {"kernel", "empty"}},
    // integers that wrapped, saturated or overflowed
    {"compute model.json --x1 x.npy -o k.npy --seed -1", 2, {"--seed", "18446744073709551615", "\"-1\""}},
    {"compute model.json --x1 x.npy -o k.npy --seed 18446744073709551616", 2, {"--seed"}},
    {"compute model.json --x1 x.npy -o k.npy --tile 9223372036854775808", 2, {"--tile", "9223372036854775807"}},
    {"compute model.json --x1 x.npy -o k.npy --memory-budget 9223372036855", 2, {"--memory-budget", "9223372036854"}},
    {"compute model.json --x1 x.npy -o k.npy --threads 1025", 2, {"--threads", "1024"}},
    // one file under two names: the kernel was lost
    {"compute model.json --x1 x.npy -o k.npy --components ./k.npy", 2, {"same file"}},
    {"compute model.json --x1 x.npy -o adir/k.npy --components ./adir/../adir/k.npy", 2, {"same file"}},
    // long values are quoted short
    {"transmogrify" + std::string(100000, 'x'), 2, {"transmogrifyxxx", "(100012 bytes)"}},
    {"compute model.json --x1 x.npy -o k.npy --mode " + std::string(100000, 'f'), 2, {"--mode", "fff"}},
    // the model
    {"compute nosuch.json --x1 x.npy -o k.npy", 1, {"nosuch.json", "No such file"}},
    {"compute broken.json --x1 x.npy -o k.npy", 1, {"broken.json", "not valid JSON"}},
    {"compute lstm.json --x1 x.npy -o k.npy", 1, {"lstm.json", "layer 1", "unknown layer type \"lstm\""}},
    {"compute inplace.json --x1 x.npy -o k.npy", 1, {"inplace.json", "layer 0 (linear)", "unknown field \"inplace\""}},
    {"compute chain.json --x1 x.npy -o k.npy", 1, {"chain.json", "layer 2 (linear)", "in_features"}},
    {"compute cnn.json --x1 x.npy -o k.npy", 1, {"cnn.json", "layer 0 (conv2d)"}},
    {"compute x.npy --x1 x.npy -o k.npy", 1, {"x.npy", "not valid JSON"}},
    {"compute deep.json --x1 x.npy -o k.npy", 1, {"deep.json", "nested deeper than 64 levels"}},
    {"compute bignum.json --x1 x.npy -o k.npy", 1, {"bignum.json", "not valid JSON", "number overflow"}},
    {"compute deep_blocks.json --x1 x.npy -o k.npy", 1, {"deep_blocks.json", "nested deeper than 64 levels"}},
    {"compute huge_weights.json --x1 x.npy -o k.npy",
     1,
     {"huge_weights.json", "layer 1 (linear): its parameters do not fit in memory", "(2147483647, 2147483647)"}},
    {"compute huge_residual.json --x1 x.npy -o k.npy",
     1,
     {"huge_residual.json", "layer 0.body.0 (conv2d): its parameters do not fit in memory"}},
    {"compute twice.json --x1 x.npy -o k.npy", 1, {"twice.json", "duplicate key \"out_features\""}},
    {"compute huge_input.json --x1 x.npy -o k.npy", 1, {"huge_input.json", "field \"input\"", "2147483647"}},
    {"compute huge_padding.json --x1 x.npy -o k.npy",
     1,
     {"huge_padding.json", "layer 0 (conv2d): field \"padding\"", "2147483647"}},
    // the data
    {"compute model.json --x1 xint.npy -o k.npy", 1, {"xint.npy", "int64", "expected float32"}},
    {"compute model.json --x1 xtrunc.npy -o k.npy", 1, {"xtrunc.npy", "truncated"}},
    {"compute model.json --x1 xtext.npy -o k.npy", 1, {"xtext.npy", "not a .npy file"}},
    {"compute model.json --x1 nosuch.npy -o k.npy", 1, {"nosuch.npy", "No such file"}},
    {"compute model.json --x1 adir -o k.npy", 1, {"adir", "is a directory"}},
    {"compute model.json --x1 x5.npy -o k.npy", 1, {"x5.npy", "--x1", "(3, 5)", "(N, 4)"}},
    {"compute model.json --x1 x.npy --x2 x5.npy -o k.npy", 1, {"x5.npy", "--x2", "x.npy", "(M, 4)"}},
    {"compute model.json --x1 xnan.npy -o k.npy", 1, {"xnan.npy", "NaN", "index 6"}},
    {"compute model.json --x1 x.npy --x2 xinf.npy -o k.npy", 1, {"xinf.npy", "--x2", "Inf"}},
    {"compute model.json --x1 xbig.npy --dtype float32 -o k.npy", 1, {"xbig.npy", "overflows float32"}},
    // the weights
    {"compute model.json --x1 x.npy --weights w_missing.safetensors -o k.npy",
     1,
     {"w_missing.safetensors", "missing tensor \"2.bias\""}},
    {"compute model.json --x1 x.npy --weights w_extra.safetensors -o k.npy",
     1,
     {"w_extra.safetensors", "unexpected tensor \"3.weight\""}},
    {"compute model.json --x1 x.npy --weights w_shape.safetensors -o k.npy",
     1,
     {"w_shape.safetensors", "\"2.weight\" has shape (3, 2), expected (2, 3)", "layer 2 (linear)"}},
    {"compute model.json --x1 x.npy --weights w_int.safetensors -o k.npy",
     1,
     {"w_int.safetensors", "\"0.weight\" has dtype I64, expected F32 or F64"}},
    {"compute model.json --x1 x.npy --weights w_hdrlen.safetensors -o k.npy",
     1,
     {"w_hdrlen.safetensors", "header length"}},
    {"compute model.json --x1 x.npy --weights w_offsets.safetensors -o k.npy",
     1,
     {"w_offsets.safetensors", "\"0.weight\"", "data buffer has 32 bytes"}},
    {"compute model.json --x1 x.npy --weights nosuch.safetensors -o k.npy", 1, {"nosuch.safetensors"}},
    // the outputs
    {"compute model.json --x1 x.npy -o no/such/dir/k.npy", 1, {"no/such/dir/k.npy", "cannot write"}},
    {"compute model.json --x1 x.npy -o adir", 1, {"adir", "is a directory"}},
    {"compute model.json --x1 x.npy -o k.npy --components no/dir/c.safetensors", 1, {"no/dir/c.safetensors"}},
    {"compute model.json --x1 x.npy -o fifo", 1, {"fifo", "a FIFO", "regular"}},
    {"compute model.json --x1 x.npy -o k.npy --components fifo", 1, {"fifo", "a FIFO"}},
    {"compute model.json --x1 fifo -o k.npy", 1, {"fifo", "not a regular file"}},
    {"compute model.json --x1 deep.npy -o k.npy", 1, {"deep.npy", "at most 16 levels"}},
    {"compute model.json --x1 x.npy --weights w_deep.safetensors -o k.npy",
     1,
     {"w_deep.safetensors", "nested deeper than 64"}},
    // analyze
    {"analyze k_rect.npy", 1, {"k_rect.npy", "(3, 2)", "square in samples"}},
    {"analyze nosuch.npy --json", 1, {"nosuch.npy"}},
    {"analyze xint.npy", 1, {"xint.npy", "int64"}},
    {"analyze k.npy --components c_shape.safetensors", 1, {"c_shape.safetensors", "\"0.weight\"", "(3, 3)"}},
    {"analyze k.npy --components w_hdrlen.safetensors", 1, {"w_hdrlen.safetensors"}},
    {"analyze deep.npy", 1, {"deep.npy", "at most 16 levels"}},
    {"analyze k.npy --components c_other.safetensors",
     1,
     {"c_other.safetensors", "written for another kernel than k.npy", "\"mix64:0123456789abcdef\"",
      "\"00000000000000ff\""}},
    {"analyze k_noout4.npy", 1, {"k_noout4.npy", "(2, 2, 0, 0)", "no outputs"}},
    {"analyze k_noout3.npy --json", 1, {"k_noout3.npy", "(2, 2, 0)", "no outputs"}},
};

}  // namespace

TEST_CASE("xntk: every bad input ends with one message, the right exit code and no output", "[cli][errors]") {
  if (std::string(XNTK_CLI).empty()) {
    WARN("the xntk program is not built (XNTK_BUILD_CLI=OFF): skipped");
    return;
  }
  test::TempDir d("cli-bad");
  write_inputs(d);
  const auto before = d.entries();
  for (const Case& c : kCases) {
    INFO("xntk " << c.args.substr(0, 200));
    const Run r = run(c.args, d);
    INFO("stderr: " << r.err.substr(0, 2000));
    CHECK(r.code == c.code);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.size() < 1100);  // short, whatever was given
    CHECK_THAT(r.err, StartsWith("xntk: "));
    for (const auto& s : c.says) CHECK_THAT(r.err, Contains(s));
    CHECK(r.out.empty());
    CHECK(d.entries() == before);  // neither an output nor a temporary file
  }
  CHECK(kCases.size() >= 20);
}

TEST_CASE("xntk compute writes the kernel, the components and one stats line", "[cli]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-good");
  write_inputs(d);
  Sequential<double> net(kSpec, 7);
  load_weights(net, d / "w.safetensors");
  const auto x = read_npy<double>(d / "x.npy"), x2 = read_npy<double>(d / "x2.npy");

  const Run r =
      run("compute model.json --x1 x.npy --x2 x2.npy --weights w.safetensors --components c.safetensors "
          "-o k.npy --stats",
          d);
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());  // no progress bar when stderr is not a terminal
  CHECK(lines(r.out) == 1);
  const auto stats = nlohmann::json::parse(r.out);
  for (const char* key : {"load_s", "compute_s", "write_s", "flops", "gflops", "peak_rss_mb", "conv_methods", "mode",
                          "dtype", "method", "n", "m", "outputs"})
    CHECK(stats.contains(key));
  CHECK(stats["n"] == 5);
  CHECK(stats["m"] == 3);
  CHECK(stats["outputs"] == 2);
  CHECK(stats["flops"].get<double>() > 0);
  CHECK(stats["peak_rss_mb"].get<double>() > 0);

  const auto want = ntk(net, x, x2, {.components = true});
  const auto k = read_npy<double>(d / "k.npy");
  CHECK(k.shape() == Shape{5, 3, 2, 2});
  CHECK(test::rel_error(k, want.total) < 1e-14);
  const auto comps = read_safetensors<double>(d / "c.safetensors");
  REQUIRE(comps.size() == 5);
  const std::vector<std::string> names = {"2.weight", "2.bias", "0.weight", "0.bias", "total"};
  for (size_t i = 0; i < comps.size(); ++i) {
    CHECK(comps[i].name == names[i]);
    CHECK(test::rel_error(comps[i].tensor, i < 4 ? want.components[i] : want.total) < 1e-14);
  }

  // modes, dtype, method, seeded initialisation
  REQUIRE(run("compute model.json --x1 x.npy --mode trace --dtype float32 -o t.npy", d).code == 0);
  CHECK(read_npy_info(d / "t.npy").itemsize == 4);
  CHECK(read_npy<double>(d / "t.npy").shape() == Shape{5, 5});
  REQUIRE(
      run("compute model.json --x1 x.npy --mode diagonal --method autograd --weights w.safetensors -o g.npy", d).code ==
      0);
  CHECK(test::rel_error(read_npy<double>(d / "g.npy"), ntk(net, x, {.mode = Mode::diagonal}).total) < 1e-12);
  REQUIRE(run("compute model.json --x1 x.npy --seed 3 -o s3.npy --threads 1 --tile 2", d).code == 0);
  CHECK(test::rel_error(read_npy<double>(d / "s3.npy"), ntk(Sequential<double>(kSpec, 3), x).total) < 1e-14);
  REQUIRE(run("compute model.json --x1 x.npy --seed 4 -o s4.npy", d).code == 0);
  CHECK(test::rel_error(read_npy<double>(d / "s4.npy"), read_npy<double>(d / "s3.npy")) > 1e-3);

  // Fortran-ordered data is the same data
  const std::vector<double> xt = [&] {
    std::vector<double> v;
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 5; ++i) v.push_back(x(i, j));
    return v;
  }();
  test::write_bytes(d / "xf.npy",
                    test::npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (5, 4), }", test::raw(xt)));
  REQUIRE(run("compute model.json --x1 xf.npy --seed 3 -o f.npy --threads 1 --tile 2", d).code == 0);  // as s3
  CHECK(test::rel_error(read_npy<double>(d / "f.npy"), read_npy<double>(d / "s3.npy")) == 0);

  // the largest tile and memory budget are accepted (a tile larger than the batch is the batch)
  REQUIRE(run("compute model.json --x1 x.npy --seed 3 -o big.npy --tile 9223372036854775807 "
              "--memory-budget 9223372036854",
              d)
              .code == 0);
  CHECK(test::rel_error(read_npy<double>(d / "big.npy"), read_npy<double>(d / "s3.npy")) < 1e-14);

  // /dev/null as output is written, not replaced, and may take both outputs
  REQUIRE(run("compute model.json --x1 x.npy -o /dev/null", d).code == 0);
  REQUIRE(run("compute model.json --x1 x.npy -o /dev/null --components /dev/null", d).code == 0);
  CHECK(std::filesystem::is_character_file("/dev/null"));
  std::set<std::string> left;
  for (const auto& e : d.entries())
    if (e[0] == '.') left.insert(e);
  CHECK(left.empty());
}

TEST_CASE("xntk compute --progress logs plain lines on stderr, the last at 100%, and leaves stdout alone", "[cli]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-progress");
  write_inputs(d);
  const std::regex last(R"(xntk compute: (\d+) of (\d+) steps \(100%\), [0-9.]+ s elapsed, ~0\.0 s left)");
  for (const std::string method : {"explicit", "autograd"}) {
    INFO(method);
    // --tile 2: 5 samples against themselves in tiles of 2 is 6 tile pairs, each a step per layer with parameters
    const Run r =
        run("compute model.json --x1 x.npy --weights w.safetensors -o k.npy --stats --progress --tile 2 "
            "--method " +
                method,
            d);
    REQUIRE(r.code == 0);
    CHECK(lines(r.out) == 1);  // the stats line only
    REQUIRE(!r.err.empty());
    CHECK(r.err.find('\r') == std::string::npos);  // lines, not a bar
    std::smatch m;
    const std::string tail = r.err.substr(r.err.rfind("xntk compute:"));
    REQUIRE(std::regex_search(tail, m, last));
    CHECK(m[1] == m[2]);
    CHECK((tail.find("GFLOP/s") != std::string::npos) == (method == "explicit"));
    if (method == "explicit") CHECK(std::stoll(m[2]) % 6 == 0);
  }
}

TEST_CASE("xntk compute --dry-run prints the plan and its FLOPs without writing anything", "[cli]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-dry-run");
  write_inputs(d);
  const auto before = d.entries();
  for (const std::string shape :
       {"--tile 2", "--x2 x2.npy --mode trace", "--mode diagonal --components c.safetensors"}) {
    INFO(shape);
    const std::string common = "compute model.json --x1 x.npy --weights w.safetensors -o k.npy " + shape;
    const auto before = d.entries();
    const Run plan = run(common + " --dry-run", d);
    REQUIRE(plan.code == 0);
    CHECK(plan.err.empty());
    CHECK(lines(plan.out) == 1);
    CHECK(d.entries() == before);  // no output, no temporary
    const auto p = nlohmann::json::parse(plan.out);
    CHECK(p["dry_run"] == true);
    for (const char* key : {"tile", "tile_pairs", "steps", "output_bytes", "components_bytes", "memory_budget_bytes",
                            "flops_estimate", "calibration", "estimated_s"})
      CHECK(p.contains(key));
    // the run it plans: the same tile, and about the FLOPs it counts. The fit a·pairs + b·samples leaves out
    // the few constant FLOPs per tile pair, which weigh here (about 1000 in all) and not in real runs (an MLP
    // 784-1000-1000-10 on 3000 samples: 1.37645e12 estimated, 1.37730e12 counted)
    const Run real = run(common + " --stats", d);
    REQUIRE(real.code == 0);
    const auto s = nlohmann::json::parse(real.out);
    CHECK(p["tile"] == s["tile"]);
    const double est = p["flops_estimate"].get<double>(), got = s["flops"].get<double>();
    CHECK(std::abs(est - got) <= 0.25 * got);
    const double bytes = p["output_bytes"].get<double>();
    CHECK(bytes == static_cast<double>(read_npy<double>(d / "k.npy").size() * 8));
  }
  const Run autograd = run("compute model.json --x1 x.npy -o k.npy --method autograd --dry-run", d);
  CHECK(autograd.code != 0);
  CHECK_THAT(autograd.err, Contains("--dry-run") && Contains("explicit"));
}

TEST_CASE("xntk analyze reads a kernel in place and one in another byte or memory order alike", "[cli]") {
  if (std::string(XNTK_CLI).empty()) return;
  // xntk's own files (host byte order, C order) are read through a memory map; big-endian and
  // Fortran-ordered ones are converted first. Both must give the same analysis, bit for bit: the same
  // double matrix reaches the same eigensolver.
  test::TempDir d("cli-analyze-mapped");
  write_inputs(d);
  REQUIRE(run("compute model.json --x1 x.npy --components c.safetensors -o k.npy", d).code == 0);
  REQUIRE(run("compute model.json --x1 x.npy --mode diagonal --dtype float32 -o kd.npy", d).code == 0);
  const auto copies = [&](const std::string& name, int itemsize) {
    const Tensor<double> k = read_npy<double>(d / (name + ".npy"));
    const Shape& s = k.shape();
    std::string big, fortran(static_cast<size_t>(k.size()) * itemsize, '\0');
    for (int64_t e = 0; e < k.size(); ++e) {
      std::string bytes = itemsize == 4 ? test::le(static_cast<float>(k[e])) : test::le(k[e]);
      // position of C-order element e in Fortran order
      int64_t rest = e, f = 0, stride = 1;
      std::vector<int64_t> idx(s.size());
      for (size_t a = s.size(); a-- > 0;) {
        idx[a] = rest % s[a];
        rest /= s[a];
      }
      for (size_t a = 0; a < s.size(); ++a) {
        f += idx[a] * stride;
        stride *= s[a];
      }
      std::memcpy(fortran.data() + f * itemsize, bytes.data(), static_cast<size_t>(itemsize));
      std::reverse(bytes.begin(), bytes.end());
      big += bytes;
    }
    std::string shape;
    for (int64_t v : s) shape += std::to_string(v) + ", ";
    const std::string t = itemsize == 4 ? "f4" : "f8";
    test::write_bytes(
        d / (name + "_be.npy"),
        test::npy_bytes("{'descr': '>" + t + "', 'fortran_order': False, 'shape': (" + shape + "), }", big));
    test::write_bytes(
        d / (name + "_f.npy"),
        test::npy_bytes("{'descr': '<" + t + "', 'fortran_order': True, 'shape': (" + shape + "), }", fortran));
  };
  copies("k", 8);
  copies("kd", 4);
  // which files are read in place (the rest are converted)
  CHECK(detail::readable_in_place(read_npy_info(d / "k.npy")));
  CHECK(detail::readable_in_place(read_npy_info(d / "kd.npy")));
  CHECK_FALSE(detail::readable_in_place(read_npy_info(d / "k_be.npy")));
  CHECK_FALSE(detail::readable_in_place(read_npy_info(d / "kd_f.npy")));
  for (const std::string& extra : {std::string(" --components c.safetensors"), std::string()}) {
    for (const std::string name : {"k", "kd"}) {
      if (name == "kd" && !extra.empty()) continue;
      CAPTURE(name, extra);
      const Run mapped = run("analyze " + name + ".npy --json" + extra, d);
      REQUIRE(mapped.code == 0);
      auto want = nlohmann::json::parse(mapped.out);
      want.erase("file");
      for (const std::string& other : {name + "_be.npy", name + "_f.npy"}) {
        CAPTURE(other);
        const Run r = run("analyze " + other + " --json" + extra, d);
        REQUIRE(r.code == 0);
        auto got = nlohmann::json::parse(r.out);
        got.erase("file");
        CHECK(got == want);
      }
    }
  }
  // the kernel's checksum is checked on the mapped values too: components of another kernel are refused
  REQUIRE(run("compute model.json --x1 x.npy --seed 3 --components c3.safetensors -o k3.npy", d).code == 0);
  const Run other = run("analyze k.npy --components c3.safetensors", d);
  CHECK(other.code == 1);
  CHECK_THAT(other.err, Contains("written for another kernel"));
}

TEST_CASE("xntk analyze prints the spectrum as text and JSON", "[cli]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-analyze");
  write_inputs(d);
  REQUIRE(run("compute model.json --x1 x.npy --weights w.safetensors --components c.safetensors -o k4.npy", d).code ==
          0);
  const Run r = run("analyze k4.npy --components c.safetensors --json", d);
  REQUIRE(r.code == 0);
  CHECK(lines(r.out) == 1);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["mode"] == "full");
  CHECK(j["samples"] == 5);
  CHECK(j["outputs"] == 2);
  CHECK(j["size"] == 10);
  CHECK(j["eigenvalues"].size() == 10);
  CHECK(j["lambda_max"].get<double>() >= j["lambda_min"].get<double>());
  REQUIRE(j["components"].size() == 4);
  CHECK(j["components"][0]["name"] == "2.weight");
  CHECK(j["shares_sum"].get<double>() == Approx(1).epsilon(1e-12));
  // the last layer's bias component is I_O in every sample block: rank O, singular, condition null with a note
  CHECK(j["components"][1]["condition"].is_null());
  CHECK(j["components"][1]["numerical_rank"] == 2);
  CHECK(j["components"][1].contains("note"));
  const Sequential<double> net = [&] {
    Sequential<double> n(kSpec, 7);
    load_weights(n, d / "w.safetensors");
    return n;
  }();
  const auto a = analyze(ntk(net, read_npy<double>(d / "x.npy")).total);
  CHECK(j["trace"].get<double>() == Approx(a.spectrum.trace).epsilon(1e-12));

  // a file name that is not UTF-8 (JSON output must be; dump() threw on it)
  std::filesystem::copy_file(d / "k.npy", d / "k\xff.npy");
  const Run latin = run("analyze \"$(printf 'k\\377.npy')\" --json", d);
  CHECK(latin.code == 0);
  CHECK_NOTHROW(nlohmann::json::parse(latin.out));

  const Run text = run("analyze k.npy", d);
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Contains("trace kernel") && Contains("condition        2") && Contains("effective rank"));
  // a components file of another kernel is refused
  const Run other = run("analyze k.npy --components c.safetensors", d);
  CHECK(other.code == 1);
  CHECK_THAT(other.err, Contains("c.safetensors"));

  // the components record their run and the kernel's checksum (in --stats too)
  const Run s1 = run("compute model.json --x1 x.npy --seed 1 --components c1.safetensors -o k1.npy --stats", d);
  REQUIRE(s1.code == 0);
  std::map<std::string, std::string> meta;
  (void)read_safetensors<double>(d / "c1.safetensors", &meta);
  CHECK(meta.at("run_id").size() == 16);
  CHECK(nlohmann::json::parse(s1.out)["run_id"] == meta.at("run_id"));
  CHECK(meta.at("kernel_checksum") == detail::kernel_checksum(read_npy<double>(d / "k1.npy"), 8));
  REQUIRE(run("compute model.json --x1 x.npy --seed 2 --components c2.safetensors -o k2.npy", d).code == 0);
  std::map<std::string, std::string> meta2;
  (void)read_safetensors<double>(d / "c2.safetensors", &meta2);
  CHECK(meta2.at("run_id") != meta.at("run_id"));
  CHECK(run("analyze k1.npy --components c1.safetensors", d).code == 0);
  // two runs on the same outputs can leave the kernel of one and the components of the other
  const Run crossed = run("analyze k1.npy --components c2.safetensors", d);
  CHECK(crossed.code == 1);
  CHECK_THAT(crossed.err,
             Contains("c2.safetensors: written for another kernel than k1.npy") && Contains(meta2.at("run_id")));
  // the checksum sees what the total's tolerance does not: a kernel differing by 1e-12 relative
  auto k1 = read_npy<double>(d / "k1.npy");
  k1[0] *= 1 + 1e-12;
  write_npy(d / "k1p.npy", k1);
  const Run close = run("analyze k1p.npy --components c1.safetensors", d);
  CHECK(close.code == 1);
  CHECK_THAT(close.err, Contains("written for another kernel than k1p.npy"));
  // float32 kernels are checked as stored
  REQUIRE(run("compute model.json --x1 x.npy --dtype float32 --components c32.safetensors -o k32.npy", d).code == 0);
  CHECK(run("analyze k32.npy --components c32.safetensors --json", d).code == 0);
}

namespace {

/// Waits until the run has created its temporary kernel file (it is computing); false if it ended first.
bool computing(pid_t pid, const test::TempDir& d) {
  const std::string temporary = ".k.npy.tmp-" + std::to_string(pid) + "-";
  for (int i = 0; i < 60000; ++i) {
    for (const auto& e : d.entries())
      if (e.rfind(temporary, 0) == 0) return true;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    usleep(500);
  }
  return false;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

}  // namespace

TEST_CASE("xntk: a run ended by a signal or a crash leaves no file, and an ignored SIGHUP stays ignored",
          "[cli][errors]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-signals");
  // a quarter of a second of work on one thread (the signal comes within a millisecond of the outputs' creation)
  save_model_spec(d / "slow.json", {.input = {64},
                                    .layers = {Linear{.out_features = 512}, Tanh(), Linear{.out_features = 512}, Tanh(),
                                               Linear{.out_features = 8}}});
  write_npy(d / "x.npy", test::randn<double>({400, 64}, 1));
  const std::vector<std::string> args = {"compute", "slow.json", "--x1",   "x.npy", "--threads",    "1",
                                         "-o",      "k.npy",     "--mode", "trace", "--components", "c.safetensors"};
  const auto before = d.entries();
  for (int sig : {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGXFSZ, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    INFO("signal " << sig << " (" << strsignal(sig) << ")");
    const pid_t pid = test::spawn(args, d, 0);
    REQUIRE(computing(pid, d));
    kill(pid, sig);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    // a sanitizer's handler reports SIGSEGV, SIGBUS and SIGFPE and exits instead
    const bool asan_handled = kAsan && (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE);
    if (asan_handled)
      CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    else
      CHECK((WIFSIGNALED(status) && WTERMSIG(status) == sig));
    CHECK(d.entries() == before);  // the temporary files were removed, no output appeared
  }
  // under nohup, SIGHUP is ignored: the run goes on and writes its outputs
  const pid_t pid = test::spawn(args, d, SIGHUP);
  REQUIRE(computing(pid, d));
  kill(pid, SIGHUP);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(read_npy_info(d / "k.npy").shape == Shape{400, 400});
  CHECK(std::filesystem::exists(d / "c.safetensors"));
}

namespace {

/// Waits until the run's temporary kernel file has `bytes` (preallocated: the kernel is being streamed into
/// it); false if the run ended first.
bool streaming(pid_t pid, const test::TempDir& d, uintmax_t bytes) {
  const std::string temporary = ".k.npy.tmp-" + std::to_string(pid) + "-";
  for (int i = 0; i < 120000; ++i) {
    for (const auto& e : d.entries()) {
      std::error_code ec;
      if (e.rfind(temporary, 0) == 0 && std::filesystem::file_size(d.path() / e, ec) == bytes && !ec) return true;
    }
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    usleep(500);
  }
  return false;
}

}  // namespace

TEST_CASE("xntk compute stopped while it streams the kernel into its files leaves no file", "[cli][errors]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-streaming");
  save_model_spec(d / "slow.json", {.input = {64},
                                    .layers = {Linear{.out_features = 512}, Tanh(), Linear{.out_features = 512}, Tanh(),
                                               Linear{.out_features = 8}}});
  write_npy(d / "x.npy", test::randn<double>({400, 64}, 1));
  // tiles of 25 samples: 136 blocks written one by one at their offsets, over seconds (a run to its end is
  // too slow for the sanitizer build)
  const std::vector<std::string> args = {"compute", "slow.json", "--x1",         "x.npy",        "--threads",
                                         "1",       "--tile",    "25",           "-o",           "k.npy",
                                         "--mode",  "trace",     "--components", "c.safetensors"};
  const uintmax_t kernel_bytes = 128 + 400 * 400 * 8;  // the npy header, then the values
  const auto before = d.entries();
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    INFO("signal " << sig << " (" << strsignal(sig) << ")");
    const pid_t pid = test::spawn(args, d, 0);
    REQUIRE(streaming(pid, d, kernel_bytes));
    usleep(20000);  // some blocks in
    kill(pid, sig);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == sig));
    CHECK(d.entries() == before);
  }
}

TEST_CASE("xntk compute on a disk without room for its outputs fails at once and leaves no file", "[cli][errors]") {
  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("cli-full");
  save_model_spec(d / "model.json", kSpec);
  write_npy(d / "x.npy", test::randn<double>({300, 4}, 1));
  const std::string args = "compute model.json --x1 x.npy -o k.npy --mode full --components c.safetensors";
  const auto before = d.entries();
  // a file size limit with SIGXFSZ ignored: what a full disk does to the reservation, without a small disk.
  // 300 × 300 × 2 × 2 float64 values are 2.9 MB, more than the limit of 2048 blocks (1 MB in dash's 512-byte
  // blocks, 2 MB in bash's 1024-byte ones)
  test::TempDir io("cli-full-io");
  const std::string cmd = "cd '" + d.path().string() + "' && (ulimit -f 2048 && trap '' XFSZ && exec '" +
                          std::string(XNTK_CLI) + "' " + args + ") > /dev/null 2> '" + (io / "err") + "'";
  const int status = std::system(cmd.c_str());
  const std::string err = test::read_bytes(io / "err");
  INFO("stderr: " << err);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 1));
  CHECK_THAT(err,
             StartsWith("xntk: ") && Contains("k.npy: cannot reserve 2880128 bytes") && Contains("File too large"));
  CHECK(lines(err) == 1);
  CHECK(d.entries() == before);
  REQUIRE(run(args, d).code == 0);  // without the limit it fits
  std::filesystem::remove(d / "k.npy");
  std::filesystem::remove(d / "c.safetensors");
  // a real full disk where one can be made (root, a 1 MB tmpfs): the kernel's reservation fails, no file left
  test::TempDir full("cli-tmpfs");
  if (mount("tmpfs", full.path().c_str(), "tmpfs", 0, "size=1m") != 0) {
    WARN("no tmpfs could be mounted (not root?): the full-disk case ran under a file size limit only");
    return;
  }
  const std::string outputs = "compute model.json --x1 x.npy --mode full -o '" + (full / "k.npy") + "' --components '" +
                              (full / "c.safetensors") + "'";
  const Run r = run(outputs, d);
  const auto left = full.entries();
  // a resumable run too: its partial files and journal were made, but it could not reserve them, so there is
  // nothing to continue and they go
  const Run resumable = run(outputs + " --resume", d);
  const auto left_resumable = full.entries();
  umount(full.path().c_str());
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("k.npy: cannot reserve") && Contains("No space left on device"));
  CHECK(lines(r.err) == 1);
  CHECK(left.empty());
  CHECK(resumable.code == 1);
  CHECK_THAT(resumable.err, Contains("k.npy: cannot reserve") && Contains("No space left on device"));
  CHECK(lines(resumable.err) == 1);
  CHECK(left_resumable.empty());
}
