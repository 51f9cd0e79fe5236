// Files: .npy and safetensors round trips and malformed files byte by byte, weights in and out of a model,
// and the model JSON (fields, defaults, errors naming layer and field).
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <exception>

#include "checked.hpp"
#include "files.hpp"
#include "helpers.hpp"
#include "io/file.hpp"

using namespace xntk;
using Catch::Matchers::Contains;
using test::le;
using test::npy_bytes;
using test::raw;
using test::safetensors_bytes;
using test::write_bytes;

namespace {

std::string repeat(const std::string& s, int n) {
  std::string r;
  for (int i = 0; i < n; ++i) r += s;
  return r;
}

Tensor<double> iota(Shape shape) {
  Tensor<double> t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t[i] = 0.5 * static_cast<double>(i) - 3.25;
  return t;
}

}  // namespace

TEST_CASE("npy round trips keep shape, values and dtype", "[io][npy]") {
  test::TempDir dir("npy");
  for (const Shape& shape : {Shape{}, Shape{7}, Shape{0, 3}, Shape{2, 3}, Shape{2, 3, 4, 5}}) {
    const auto d = iota(shape);
    write_npy(dir / "d.npy", d);
    const auto back = read_npy<double>(dir / "d.npy");
    CHECK(back.shape() == shape);
    CHECK(test::rel_error(back, d) == 0);
    // float64 on disk read as float32 and float32 on disk read as float64 (exact for these values)
    const auto f = d.cast<float>();
    write_npy(dir / "f.npy", f);
    CHECK(read_npy_info(dir / "f.npy").itemsize == 4);
    CHECK(test::rel_error(read_npy<double>(dir / "f.npy"), d) == 0);
    CHECK(test::rel_error(read_npy<float>(dir / "d.npy"), f) == 0);
  }
  CHECK(dir.entries() == std::vector<std::string>{"d.npy", "f.npy"});  // no temporary file left
}

TEST_CASE("npy writer produces NumPy's header layout", "[io][npy]") {
  test::TempDir dir("npyhdr");
  write_npy(dir / "a.npy", Tensor<double>({2, 3}));
  write_npy(dir / "b.npy", Tensor<float>({5}));
  const std::string a = test::read_bytes(dir / "a.npy"), b = test::read_bytes(dir / "b.npy");
  REQUIRE(a.size() == 128 + 48);  // header padded to 64 bytes, then 6 doubles
  CHECK(a.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(a.substr(10, 59) == "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }");
  CHECK(a[127] == '\n');
  CHECK(b.find("'descr': '<f4'") != std::string::npos);
  CHECK(b.find("'shape': (5,)") != std::string::npos);  // a one-element tuple keeps its comma
}

TEST_CASE("npy reader handles versions 2.0/3.0, Fortran order, big-endian and Python 2 headers", "[io][npy]") {
  test::TempDir dir("npyvar");
  const std::vector<double> cdata = {0, 1, 2, 3, 4, 5};
  write_bytes(dir / "v2.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", raw(cdata), 2));
  write_bytes(dir / "v3.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", raw(cdata), 3));
  CHECK(read_npy<double>(dir / "v2.npy").shape() == Shape{2, 3});
  CHECK(read_npy<double>(dir / "v3.npy")[5] == 5);

  // column-major (2, 3): memory holds a[0,0], a[1,0], a[0,1], a[1,1], a[0,2], a[1,2]
  write_bytes(dir / "f.npy", npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
                                       raw(std::vector<double>{0, 3, 1, 4, 2, 5})));
  const auto f = read_npy<double>(dir / "f.npy");
  CHECK(f.shape() == Shape{2, 3});
  for (int64_t i = 0; i < 6; ++i) CHECK(f[i] == static_cast<double>(i));
  // column-major (2, 3, 2): element (i, j, k) at i + 2 j + 6 k
  std::vector<float> fdata(12);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k)
        fdata[static_cast<size_t>(i + 2 * j + 6 * k)] = static_cast<float>(100 * i + 10 * j + k);
  write_bytes(dir / "f3.npy", npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 2), }", raw(fdata)));
  const auto f3 = read_npy<double>(dir / "f3.npy");
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) CHECK(f3(i, j, k) == 100 * i + 10 * j + k);

  // big-endian float64 1.5 = 3F F8 00 .. 00
  write_bytes(dir / "be.npy", npy_bytes("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }",
                                        std::string("\x3f\xf8\0\0\0\0\0\0", 8)));
  CHECK(read_npy<double>(dir / "be.npy")[0] == 1.5);
  // NumPy under Python 2 wrote long integers with an L and keys in any order
  write_bytes(dir / "py2.npy",
              npy_bytes("{'shape': (2L, 1L), 'fortran_order': False, 'descr': '<f4'}", raw(std::vector<float>{1, 2})));
  CHECK(read_npy<float>(dir / "py2.npy").shape() == Shape{2, 1});
}

TEST_CASE("malformed npy files are refused with the file and the problem", "[io][npy][errors]") {
  test::TempDir dir("npybad");
  const std::string ok = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string six = raw(std::vector<double>(6, 1.0));
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"empty.npy", "", {"empty.npy", "not a .npy file"}},
      {"magic.npy", "PK\x03\x04 this is a zip file, not an array", {"magic.npy", "magic string"}},
      {"truncated.npy", npy_bytes(ok, six.substr(0, 40)), {"truncated.npy", "truncated", "(2, 3)", "48 bytes"}},
      {"trailing.npy", npy_bytes(ok, six + "xx"), {"trailing.npy", "2 unexpected bytes"}},
      {"int64.npy",
       npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }", six),
       {"int64.npy", "'<i8' (int64)", "expected float32"}},
      {"half.npy",
       npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }", six.substr(0, 12)),
       {"'<f2' (float16)"}},
      {"record.npy",
       npy_bytes("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (6,), }", six),
       {"record.npy", "structured"}},
      {"nokey.npy", npy_bytes("{'descr': '<f8', 'shape': (6,), }", six), {"nokey.npy", "lacks 'fortran_order'"}},
      {"extrakey.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (6,), 'x': 1}", six),
       {"unexpected key 'x'"}},
      {"negshape.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", six), {"non-negative"}},
      {"syntax.npy",
       npy_bytes("{'descr': '<f8' 'fortran_order': False}", six),
       {"syntax.npy", "malformed .npy header"}},
      {"version.npy", npy_bytes(ok, six, 9), {"version.npy", "version 9.0"}},
      {"hdrlen.npy",
       std::string("\x93NUMPY\x01\x00", 8) + le(static_cast<uint16_t>(60000)) + "{}",
       {"hdrlen.npy", "header length is 60000"}},
      {"huge.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 16), }", six),
       {"huge.npy", "too large"}},
      // hostile headers: nesting that overflowed the stack, keys given twice (the shapes were concatenated),
      // an item size that overflowed an int, values and headers echoed whole
      {"deep.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': " + std::string(100000, '[') +
                     std::string(100000, ']') + "}",
                 six, 2),
       {"deep.npy", "malformed .npy header", "at most 16 levels"}},
      {"twoshapes.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'shape': (3,), }", six),
       {"twoshapes.npy", "'shape' twice"}},
      {"twodescr.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'descr': '<f4', 'shape': (6,), }", six),
       {"'descr' twice"}},
      {"bits.npy",
       npy_bytes("{'descr': '<f999999999', 'fortran_order': False, 'shape': (6,), }", six),
       {"bits.npy", "'<f999999999' (an unsupported type)", "expected float32"}},
      {"rank.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1" + repeat(", 1", 99) + "), }",
                 raw(std::vector<double>(1, 1.0))),
       {"rank.npy", "100 dimensions", "at most 64"}},
      {"longkey.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (6,), '" + std::string(100000, 'k') + "': 1}", six,
                 2),
       {"longkey.npy", "'kkkk", "...' (100000 bytes)"}},
      {"longdescr.npy",
       npy_bytes("{'descr': '<f" + std::string(100000, '8') + "', 'fortran_order': False, 'shape': (6,), }", six, 2),
       {"longdescr.npy", "(an unsupported type)"}},
      {"longsyntax.npy",
       npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (6,) " + std::string(100000, 'z') + "}", six, 2),
       {"longsyntax.npy", "malformed .npy header at character 55: expected ',' before \"zzzz", "(100001 bytes)"}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    write_bytes(dir / c.name, c.bytes);
    try {
      (void)read_npy<double>(dir / c.name);
      FAIL("no error");
    } catch (const Error& e) {
      for (const auto& s : c.says) CHECK_THAT(e.what(), Contains(s));
      CHECK(std::string(e.what()).size() < 300);  // whatever the header holds, the message stays short
    }
  }
  CHECK_THROWS_WITH(read_npy<double>(dir / "missing.npy"), Contains("missing.npy") && Contains("No such file"));
  CHECK_THROWS_WITH(read_npy<double>(dir.path().string()), Contains("is a directory"));
}

TEST_CASE("writers are atomic and name the file they cannot write", "[io]") {
  test::TempDir dir("atomic");
  CHECK_THROWS_WITH(write_npy(dir / "no/such/dir/k.npy", Tensor<double>({2})),
                    Contains("no/such/dir/k.npy") && Contains("cannot write"));
  CHECK_THROWS_WITH(write_npy(dir.path().string(), Tensor<double>({2})), Contains("is a directory"));
  // overwriting replaces the old content completely
  write_npy(dir / "k.npy", iota({50}));
  write_npy(dir / "k.npy", iota({2}));
  CHECK(read_npy<double>(dir / "k.npy").shape() == Shape{2});
  CHECK(dir.entries() == std::vector<std::string>{"k.npy"});
  // a failing safetensors write (duplicate names) leaves neither the file nor a temporary behind
  const std::vector<NamedTensor<double>> dup = {{"a", iota({1})}, {"a", iota({1})}};
  CHECK_THROWS_WITH(write_safetensors(dir / "dup.safetensors", dup),
                    Contains("dup.safetensors") && Contains("duplicate"));
  CHECK(dir.entries() == std::vector<std::string>{"k.npy"});
}

TEST_CASE("safetensors round trips keep order, shapes, dtype and metadata", "[io][safetensors]") {
  test::TempDir dir("st");
  const std::vector<NamedTensor<double>> tensors = {
      {"z.last", iota({2, 3})}, {"a.first", iota({4})}, {"scalar", iota({})}, {"empty", iota({0, 2})}};
  write_safetensors(dir / "t.safetensors", tensors, {{"format", "pt"}});
  std::map<std::string, std::string> meta;
  const auto back = read_safetensors<double>(dir / "t.safetensors", &meta);
  REQUIRE(back.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    CHECK(back[i].name == tensors[i].name);  // the writer's order, not alphabetical
    CHECK(back[i].tensor.shape() == tensors[i].tensor.shape());
    CHECK(test::rel_error(back[i].tensor, tensors[i].tensor) == 0);
  }
  CHECK(meta.at("format") == "pt");
  const std::string bytes = test::read_bytes(dir / "t.safetensors");
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);  // data 8-byte aligned
  CHECK(bytes.substr(8, 1) == "{");
  CHECK(bytes.find("\"dtype\":\"F64\"") != std::string::npos);
  // float32 in, float64 out and back
  write_safetensors<float>(dir / "f.safetensors", {{"w", iota({3, 2}).cast<float>()}});
  CHECK(test::read_bytes(dir / "f.safetensors").find("\"F32\"") != std::string::npos);
  CHECK(test::rel_error(read_safetensors<double>(dir / "f.safetensors")[0].tensor, iota({3, 2})) == 0);
}

TEST_CASE("malformed safetensors files are refused before allocation", "[io][safetensors][errors]") {
  test::TempDir dir("stbad");
  const std::string d16 = raw(std::vector<double>{1, 2});
  const std::string entry = R"("w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]})";
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"short.safetensors", "abc", {"short.safetensors", "not a safetensors file"}},
      {"hdrlen.safetensors",
       le(static_cast<uint64_t>(1) << 40) + "{}",
       {"hdrlen.safetensors", "header length 1099511627776"}},
      {"notjson.safetensors", safetensors_bytes("{\"w\": [1, 2", ""), {"not valid JSON"}},
      {"array.safetensors", safetensors_bytes("[1, 2]", ""), {"must be a JSON object"}},
      {"beyond.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[1000000000],"data_offsets":[0,8000000000]}})", d16),
       {"beyond.safetensors", "\"w\"", "8000000000", "16 bytes"}},
      {"int.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}})", d16),
       {"\"w\"", "I32", "expected F32, F64 or I64"}},
      {"unknown.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,16]}})", d16),
       {"unknown dtype \"Q7\""}},
      {"mismatch.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[3],"data_offsets":[0,16]}})", d16),
       {"shape (3,)", "needs 24 bytes", "span 16"}},
      {"reversed.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[0],"data_offsets":[16,0]}})", d16),
       {"end before they begin"}},
      {"gap.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}})", d16),
       {"\"w\" starts at byte 8", "gap"}},
      {"overlap.safetensors",
       safetensors_bytes(
           R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}})",
           d16),
       {"overlapping"}},
      {"trailing.safetensors",
       safetensors_bytes("{" + entry + "}", d16 + "12345678"),
       {"8 bytes of data after the last tensor"}},
      {"field.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16],"x":1}})", d16),
       {"unexpected field \"x\""}},
      {"noshape.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","data_offsets":[0,16]}})", d16),
       {"missing field \"shape\""}},
      {"negshape.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[-2],"data_offsets":[0,16]}})", d16),
       {"non-negative integer"}},
      {"meta.safetensors", safetensors_bytes(R"({"__metadata__":{"a":1},)" + entry + "}", d16), {"__metadata__ \"a\""}},
      // hostile headers: deep nesting (dump() in a message recursed into it), huge values (echoed whole),
      // duplicate keys (the last one silently won), numbers beyond double (a raw library exception)
      {"deep.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":)" + std::string(100000, '[') + std::string(100000, ']') +
                             R"(,"data_offsets":[0,16]}})",
                         d16),
       {"deep.safetensors", "nested deeper than 64 levels"}},
      {"long.safetensors",
       safetensors_bytes(
           R"({"w":{"dtype":"F64","shape":[")" + std::string(1 << 20, 'x') + R"("],"data_offsets":[0,16]}})", d16),
       {"long.safetensors", "\"w\": shape", "xxxxxxxx...\" (1048576 bytes)"}},
      {"longname.safetensors",
       safetensors_bytes(R"({")" + std::string(100000, 'n') + R"(":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}})",
                         d16),
       {"longname.safetensors", "nnnn...\" (100000 bytes)", "I32"}},
      {"noname.safetensors",
       safetensors_bytes(R"({"":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", d16),
       {"noname.safetensors", "empty name"}},
      {"dupkey.safetensors", safetensors_bytes("{" + entry + "," + entry + "}", d16), {"duplicate key \"w\""}},
      {"dupfield.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[2],"shape":[1],"data_offsets":[0,16]}})", d16),
       {"duplicate key \"shape\""}},
      {"bignum.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,1e400]}})", d16),
       {"bignum.safetensors", "not valid JSON", "number overflow"}},
      {"rank.safetensors",
       safetensors_bytes(R"({"w":{"dtype":"F64","shape":[1)" + repeat(",1", 99) + R"(],"data_offsets":[0,8]}})",
                         d16.substr(0, 8)),
       {"rank.safetensors", "100 dimensions", "at most 64"}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    write_bytes(dir / c.name, c.bytes);
    try {
      (void)read_safetensors<double>(dir / c.name);
      FAIL("no error");
    } catch (const Error& e) {
      for (const auto& s : c.says) CHECK_THAT(e.what(), Contains(s));
      CHECK(std::string(e.what()).size() < 300);  // whatever the file holds, the message stays short
    }
  }
  // the same layout, well-formed, is read (so the cases above fail for the stated reason)
  write_bytes(dir / "good.safetensors", safetensors_bytes(R"({"__metadata__":{"a":"b"},)" + entry + "}", d16));
  CHECK(read_safetensors<double>(dir / "good.safetensors")[0].tensor[1] == 2);
}

TEST_CASE("weights load by state_dict name and are checked completely", "[io][weights]") {
  test::TempDir dir("weights");
  const ModelSpec spec{.input = {3}, .layers = {Linear{.out_features = 4}, ReLU(), Linear{.out_features = 2}}};
  Sequential<double> a(spec, 1), b(spec, 2);
  save_weights(a, dir / "w.safetensors");
  load_weights(b, dir / "w.safetensors");
  for (const auto& p : a.named_parameters()) CHECK(test::rel_error(b.parameter(p.name), *p.tensor) == 0);
  Sequential<float> f(spec, 3);
  load_weights(f, dir / "w.safetensors");  // float64 file into a float model
  CHECK(test::rel_error(f.parameter("2.weight"), a.parameter("2.weight")) < 1e-7);

  Sequential<double> c(spec, 4);
  const Tensor<double> before = c.parameter("0.weight");
  auto named = [&](std::vector<NamedTensor<double>> t) {
    write_safetensors(dir / "bad.safetensors", t);
    return dir / "bad.safetensors";
  };
  std::vector<NamedTensor<double>> all;
  for (const auto& p : a.named_parameters()) all.push_back({p.name, *p.tensor});
  auto missing = all;
  missing.pop_back();
  CHECK_THROWS_WITH(load_weights(c, named(missing)),
                    Contains("bad.safetensors") && Contains("missing tensor \"2.bias\"") && Contains("(2,)"));
  auto extra = all;
  extra.push_back({"1.weight", iota({1})});
  CHECK_THROWS_WITH(load_weights(c, named(extra)),
                    Contains("unexpected tensor \"1.weight\"") && Contains("0.weight, 0.bias"));
  auto shaped = all;
  shaped[0].tensor = iota({3, 4});
  CHECK_THROWS_WITH(load_weights(c, named(shaped)),
                    Contains("\"0.weight\" has shape (3, 4), expected (4, 3)") && Contains("layer 0 (linear)"));
  auto nan = all;
  nan[2].tensor[1] = NAN;
  CHECK_THROWS_WITH(load_weights(c, named(nan)), Contains("\"2.weight\"") && Contains("non-finite"));
  // a refused file changes nothing, even where its first tensors were fine
  CHECK(test::rel_error(c.parameter("0.weight"), before) == 0);
  // neither a huge name from the file nor a long parameter list from the model makes a long message
  ModelSpec deep{.input = {2}};
  for (int i = 0; i < 12; ++i) deep.layers.push_back(Linear{.out_features = 2});
  Sequential<double> d(deep, 5);
  CHECK_THROWS_WITH(load_weights(d, named({{std::string(100000, 'w'), iota({1})}})),
                    Contains("unexpected tensor \"www") && Contains("(100000 bytes)") && Contains("(24 in all)") &&
                        !Contains("10.bias"));
  try {
    load_weights(d, named({{std::string(100000, 'w'), iota({1})}}));
  } catch (const Error& e) {
    CHECK(std::string(e.what()).size() < 300);
  }
}

TEST_CASE("model JSON: the DESIGN example, PyTorch defaults and both parameterisations", "[io][json]") {
  const auto spec = parse_model_spec(R"({"input": [3, 32, 32], "parameterization": "standard", "layers": [
      {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "stride": 1, "padding": 0, "dilation": 1, "bias": true},
      {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]})");
  CHECK(spec.input == Shape{3, 32, 32});
  CHECK(spec.parameterization == Parameterization::standard);
  REQUIRE(spec.layers.size() == 4);
  const auto& conv = std::get<Conv2d>(spec.layers[0]);
  CHECK((conv.out_channels == 32 && conv.kernel_size.h == 3 && conv.kernel_size.w == 3 && conv.bias &&
         conv.method == ConvMethod::automatic));
  CHECK(std::get<Activation>(spec.layers[1]).kind == ActivationKind::relu);
  CHECK(std::holds_alternative<Flatten>(spec.layers[2]));
  CHECK(std::get<Linear>(spec.layers[3]).out_features == 10);

  const auto ntk = parse_model_spec(R"({"input": 8, "parameterization": "ntk", "layers": [
      {"type": "linear", "out_features": 4, "in_features": 8, "bias": false, "w_std": 1.5, "b_std": 0.1},
      {"type": "leaky_relu", "negative_slope": 0.2}, {"type": "elu", "alpha": 0.5},
      {"type": "softplus", "beta": 2, "threshold": 5}, {"type": "gelu", "approximate": "tanh"},
      {"type": "tanh"}, {"type": "sigmoid"}, {"type": "erf"}, {"type": "silu"}, {"type": "identity"}]})");
  CHECK(ntk.input == Shape{8});
  CHECK(ntk.parameterization == Parameterization::ntk);
  const auto& lin = std::get<Linear>(ntk.layers[0]);
  CHECK((lin.in_features == 8 && !lin.bias && lin.w_std == 1.5 && lin.b_std == 0.1));
  CHECK(std::get<Activation>(ntk.layers[1]).negative_slope == 0.2);
  CHECK(std::get<Activation>(ntk.layers[2]).alpha == 0.5);
  CHECK(std::get<Activation>(ntk.layers[3]).beta == 2);
  CHECK(std::get<Activation>(ntk.layers[3]).threshold == 5);
  CHECK(std::get<Activation>(ntk.layers[4]).approximate == "tanh");
  for (size_t i = 1; i < ntk.layers.size(); ++i)
    CHECK(type_name(ntk.layers[i]) == name(std::get<Activation>(ntk.layers[i]).kind));
}

TEST_CASE("model JSON: padding \"same\", pool strides and round trips", "[io][json]") {
  const auto spec = parse_model_spec(R"({"input": [2, 9, 9], "layers": [
      {"type": "conv2d", "out_channels": 3, "kernel_size": [3, 5], "padding": "same", "dilation": [1, 2],
       "method": "positions"},
      {"type": "conv2d", "out_channels": 3, "kernel_size": 2, "padding": "valid", "groups": 1, "padding_mode": "zeros"},
      {"type": "maxpool2d", "kernel_size": 2}, {"type": "avgpool2d", "kernel_size": [2, 3], "stride": null, "padding": 1},
      {"type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": [1, 0], "dilation": 2},
      {"type": "global_avgpool"}, {"type": "flatten", "start_dim": 1}]})");
  const auto& same = std::get<Conv2d>(spec.layers[0]);
  CHECK((same.padding_rule == ConvPadding::same && padding_sizes(same).before == Size2(1, 4) &&
         padding_sizes(same).after == Size2(1, 4) && same.dilation.w == 2 && same.method == ConvMethod::positions));
  CHECK(std::get<Conv2d>(spec.layers[1]).padding_rule == ConvPadding::valid);
  CHECK(std::get<Conv2d>(spec.layers[1]).groups == 1);
  const auto& mp = std::get<MaxPool2d>(spec.layers[2]);
  CHECK((mp.kernel_size.h == 2 && mp.stride.h == 0 && mp.padding.h == 0 && mp.dilation.h == 1));
  const auto& ap = std::get<AvgPool2d>(spec.layers[3]);
  CHECK((ap.kernel_size.h == 2 && ap.kernel_size.w == 3 && ap.stride.h == 0 && ap.padding.w == 1));
  const auto& mp2 = std::get<MaxPool2d>(spec.layers[4]);
  CHECK((mp2.stride.h == 1 && mp2.padding.h == 1 && mp2.padding.w == 0 && mp2.dilation.w == 2));

  // writing and reading back gives the same spec (compared through its JSON, which names every field)
  const std::string text = model_spec_to_json(spec);
  CHECK(model_spec_to_json(parse_model_spec(text)) == text);
  // groups, and "same" of an even kernel (PyTorch pads the extra row and column after): kept as written
  const auto grouped = parse_model_spec(R"({"input": [4, 5, 5], "layers": [
      {"type": "Conv2d", "out_channels": 8, "kernel_size": [2, 3], "padding": "same", "groups": 4}]})");
  const auto& g = std::get<Conv2d>(grouped.layers[0]);
  CHECK((g.groups == 4 && g.padding_rule == ConvPadding::same && padding_sizes(g).before == Size2(0, 1) &&
         padding_sizes(g).after == Size2(1, 1)));
  const std::string grouped_text = model_spec_to_json(grouped);
  CHECK_THAT(grouped_text, Contains("\"padding\":\"same\"") && Contains("\"groups\":4"));
  CHECK(model_spec_to_json(parse_model_spec(grouped_text)) == grouped_text);
  CHECK(Sequential<double>(grouped, 0).output_shape() == Shape{8, 5, 5});
  test::TempDir dir("json");
  const ModelSpec mlp{.input = {5},
                      .parameterization = Parameterization::ntk,
                      .layers = {Linear{.out_features = 3, .bias = false, .w_std = 2}, GELU("tanh"), Softplus(2, 4),
                                 LeakyReLU(0.3), ELU(0.7), Linear{.out_features = 1}}};
  save_model_spec(dir / "m.json", mlp);
  const auto back = load_model_spec(dir / "m.json");
  CHECK(model_spec_to_json(back) == model_spec_to_json(mlp));
  CHECK(std::get<Activation>(back.layers[2]).threshold == 4);
}

TEST_CASE("model JSON: blocks nest up to the JSON depth limit (30 blocks), and such a model builds", "[io][json]") {
  auto nested = [](int depth, bool residual) {
    std::string layer = R"({"type": "conv2d", "out_channels": 2, "kernel_size": [1, 1]})";
    for (int i = 0; i < depth; ++i)
      layer = residual ? R"({"type": "residual", "body": [)" + layer + "]}"
                       : R"({"type": "sequential", "layers": [)" + layer + "]}";
    return R"({"input": [2, 3, 3], "layers": [)" + layer + "]}";
  };
  for (const bool residual : {false, true}) {
    INFO((residual ? "residual" : "sequential"));
    const ModelSpec spec = parse_model_spec(nested(30, residual), "net.json");
    const Sequential<double> net(spec, 1);
    CHECK(net.output_shape() == Shape{2, 3, 3});
    CHECK(parse_model_spec(model_spec_to_json(spec), "again.json").layers.size() == 1);
    CHECK_THROWS_WITH(parse_model_spec(nested(31, residual), "net.json"),
                      Contains("net.json: arrays and objects nested deeper than 64 levels"));
  }
}

TEST_CASE("a model whose parameters cannot fit in memory is refused before they are allocated, naming the layer",
          "[io][json][errors]") {
  // 2^31 × 2^31 weights; and in a block, a conv whose weight alone is 4.3 GB against a limit set to 1 GB
  const ModelSpec wide{.input = {2147483647}, .layers = {Linear{.out_features = 2147483647}}};
  CHECK_THROWS_WITH(Sequential<float>(wide, 0), Contains("layer 0 (linear): its parameters do not fit in memory") &&
                                                    Contains("(2147483647, 2147483647) needs"));
  detail::set_tensor_byte_limit(1e9);
  const ModelSpec block{.input = {1, 16, 16},
                        .layers = {Residual{.body = {Conv2d{.out_channels = 1 << 20, .kernel_size = 1}, ReLU(),
                                                     Conv2d{.out_channels = 1024, .kernel_size = 1}},
                                            .shortcut = {}}}};
  CHECK_THROWS_WITH(Sequential<float>(block, 0),
                    Contains("layer 0.body.2 (conv2d): its parameters do not fit in memory") &&
                        Contains("(1024, 1048576, 1, 1) needs 4.29 GB, more than the 1 GB of memory allowed"));
  detail::set_tensor_byte_limit(0);
  CHECK_NOTHROW(Sequential<float>(ModelSpec{.input = {4}, .layers = {Linear{.out_features = 3}}}, 0));
}

TEST_CASE("model JSON errors name the file, the layer and the field", "[io][json][errors]") {
  auto error = [](const std::string& text) -> std::string {
    try {
      (void)parse_model_spec(text, "net.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string head = R"({"input": [4], "layers": [{"type": "linear", "out_features": 3}, )";
  CHECK_THAT(error("{\"input\": [4], \"layers\": ["), Contains("net.json: not valid JSON") && Contains("line 1"));
  CHECK_THAT(error("[1, 2]"), Contains("net.json: expected a JSON object"));
  CHECK_THAT(error(R"({"layers": [{"type": "relu"}]})"), Contains("missing field \"input\""));
  CHECK_THAT(error(R"({"input": [4]})"), Contains("missing field \"layers\""));
  CHECK_THAT(error(R"({"input": [4], "layers": []})"), Contains("non-empty array"));
  CHECK_THAT(error(R"({"input": [4, 0], "layers": [{"type": "relu"}]})"), Contains("field \"input\""));
  CHECK_THAT(error(R"({"input": [4], "layers": [{"type": "relu"}], "optimizer": "sgd"})"),
             Contains("unknown field \"optimizer\""));
  CHECK_THAT(error(R"({"input": [4], "parameterization": "mup", "layers": [{"type": "relu"}]})"),
             Contains("field \"parameterization\"") && Contains("\"standard\" or \"ntk\"") && Contains("\"mup\""));
  CHECK_THAT(error(head + R"({"type": "lstm", "hidden_size": 5}]})"),
             Contains("net.json: layer 1: unknown layer type \"lstm\"") && Contains("global_avgpool"));
  CHECK_THAT(error(head + R"({"type": "relu", "inplace": true}]})"),
             Contains("layer 1 (relu): unknown field \"inplace\"") && Contains("no other field"));
  CHECK_THAT(error(head + R"({"type": "linear", "out_feature": 3}]})"),
             Contains("layer 1 (linear): unknown field \"out_feature\"") && Contains("out_features"));
  CHECK_THAT(error(head + R"({"type": "linear"}]})"), Contains("layer 1 (linear): missing field \"out_features\""));
  CHECK_THAT(error(head + R"({"type": "linear", "out_features": "3"}]})"),
             Contains("layer 1 (linear): field \"out_features\": expected a positive integer, got \"3\""));
  CHECK_THAT(error(head + R"({"type": "linear", "out_features": 2.5}]})"), Contains("got 2.5"));
  CHECK_THAT(error(head + R"({"type": "linear", "out_features": 2, "bias": 1}]})"),
             Contains("field \"bias\": expected true or false"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": [3, 3, 3]}]})"),
             Contains("layer 1 (conv2d): field \"kernel_size\": expected a positive integer or [h, w]"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": -1}]})"),
             Contains("field \"padding\": expected a non-negative integer or [h, w]"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": "full"}]})"),
             Contains("layer 1 (conv2d): field \"padding\": expected one of \"valid\", \"same\", got \"full\""));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": true}]})"),
             Contains("layer 1 (conv2d): field \"padding\"") && Contains("\"same\""));
  CHECK_THAT(
      error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": "same"}]})"),
      Contains("field \"padding\"") && Contains("stride 1"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 3, "kernel_size": 3, "groups": 2}]})"),
             Contains("layer 1 (conv2d): field \"groups\": expected a divisor of in_channels and out_channels (3)"));
  CHECK_THAT(
      error(head + R"({"type": "conv2d", "out_channels": 4, "in_channels": 3, "kernel_size": 3, "groups": 2}]})"),
      Contains("field \"groups\": expected a divisor of in_channels and out_channels (3 and 4)"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "groups": 0}]})"),
             Contains("layer 1 (conv2d): field \"groups\": expected a positive integer"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding_mode": "reflect"}]})"),
             Contains("layer 1 (conv2d): field \"padding_mode\": expected \"zeros\"") && Contains("\"reflect\""));
  CHECK_THAT(error(head + R"({"type": "avgpool2d", "kernel_size": 2, "ceil_mode": true}]})"),
             Contains("layer 1 (avgpool2d): field \"ceil_mode\": expected false"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, "method": "fast"}]})"),
             Contains("field \"method\"") && Contains("\"positions\""));
  CHECK_THAT(error(head + R"({"type": "maxpool2d", "kernel_size": 2, "ceil_mode": true}]})"),
             Contains("layer 1 (maxpool2d): field \"ceil_mode\""));
  CHECK_THAT(error(head + R"({"type": "gelu", "approximate": "fast"}]})"),
             Contains("layer 1 (gelu): field \"approximate\"") && Contains("\"tanh\""));
  CHECK_THAT(error(head + R"({"type": "leaky_relu", "negative_slope": "big"}]})"), Contains("expected a number"));
  CHECK_THAT(error(head + R"(7]})"), Contains("layer 1: expected an object"));
  CHECK_THAT(error(head + R"({"kind": "relu"}]})"), Contains("layer 1: missing field \"type\""));
  // hostile files: a value nested 10^5 deep (dump() in the message recursed into it), values quoted whole,
  // a key given twice (the last one won), a number beyond double (a raw library exception naming no file)
  const std::vector<std::pair<std::string, std::vector<std::string>>> hostile = {
      {head + R"({"type": "linear", "out_features": )" + std::string(100000, '[') + std::string(100000, ']') + "}]}",
       {"net.json: arrays and objects nested deeper than 64 levels"}},
      {head + R"({"type": "linear", "out_features": ")" + std::string(1 << 20, 'x') + R"("}]})",
       {"layer 1 (linear): field \"out_features\"", "got \"xxxx", "...\" (1048576 bytes)"}},
      {head + R"({"type": "linear", "out_features": [)" + repeat("1, ", 100000) + "1]}]}",
       {"field \"out_features\"", "got [1, 1, 1", "...]"}},
      {head + R"({"type": ")" + std::string(100000, 't') + R"("}]})", {"unknown layer type \"tttt", "(100000 bytes)"}},
      {head + R"({"type": "relu", ")" + std::string(100000, 'k') + R"(": 1}]})", {"unknown field \"kkkk"}},
      {R"({"input": [4], "layers": [{"type": "relu"}], ")" + std::string(100000, 'k') + R"(": 1})",
       {"net.json: unknown field \"kkkk"}},
      {R"({"input": )" + std::string(100000, '[') + std::string(100000, ']') + R"(, "layers": [{"type": "relu"}]})",
       {"nested deeper than 64 levels"}},
      {R"({"input": [)" + repeat("1, ", 100000) + R"(1], "layers": [{"type": "relu"}]})",
       {"field \"input\": 100001 dimensions; expected at most 63"}},
      {R"({"input": [)" + repeat("-1, ", 50) + R"("x"], "layers": [{"type": "relu"}]})",
       {"field \"input\"", "got [-1, -1, -1", "...]"}},
      {R"({"input": [4], "layers": [{"type": "relu"}], "parameterization": ")" + std::string(100000, 'p') + R"("})",
       {"field \"parameterization\"", "\"pppp"}},
      {R"({"input": [4], "layers": {"a": )" + std::string(1000, '[') + std::string(1000, ']') + "}}",
       {"nested deeper than 64 levels"}},
      {head + R"({"type": "linear", "out_features": 3, "out_features": 4}]})",
       {"net.json: duplicate key \"out_features\""}},
      {R"({"input": [4], "input": [5], "layers": [{"type": "relu"}]})", {"duplicate key \"input\""}},
      {head + R"({"type": "linear", "out_features": 3, "w_std": 1e400}]})",
       {"net.json: not valid JSON", "number overflow"}},
      {R"({"input": [4], "layers": [{"type": "relu"}]})" + std::string(100000, 'z'), {"net.json: not valid JSON"}},
  };
  // sizes that overflowed int64 in the layers (input [2^62], out_features 2^62, conv padding 2^32 or 2^62)
  const std::string big = "4611686018427387904", relu = R"(, "layers": [{"type": "relu"}]})";
  CHECK_THAT(error(R"({"input": [3, )" + big + "]" + relu),
             Contains("field \"input\": each dimension must be at most 2147483647"));
  CHECK_THAT(error(R"({"input": )" + big + relu), Contains("field \"input\"") && Contains("at most 2147483647"));
  CHECK_THAT(error(R"({"input": [65536, 65536])" + relu),
             Contains("field \"input\": expected at most 2147483647 (2^31 - 1) elements per sample"));
  CHECK_THAT(error(R"({"input": [1)" + repeat(", 1", 63) + "]" + relu),
             Contains("field \"input\": 64 dimensions; expected at most 63"));
  CHECK_THAT(error(head + R"({"type": "linear", "out_features": )" + big + "}]}"),
             Contains("layer 1 (linear): field \"out_features\": expected at most 2147483647 (2^31 - 1), got " + big));
  CHECK_THAT(error(head + R"({"type": "linear", "out_features": 2, "in_features": 9223372036854775808}]})"),
             Contains("field \"in_features\": expected at most 2147483647"));
  const std::string conv = R"({"type": "conv2d", "out_channels": 2, "kernel_size": 3, )";
  CHECK_THAT(error(head + conv + R"("padding": 4294967296}]})"), Contains("field \"padding\": expected at most"));
  CHECK_THAT(error(head + conv + R"("padding": [0, )" + big + "]}]}"), Contains("field \"padding\": expected at most"));
  CHECK_THAT(error(head + conv + R"("stride": 18446744073709551615}]})"),
             Contains("field \"stride\": expected at most"));
  CHECK_THAT(error(head + R"({"type": "conv2d", "out_channels": )" + big + R"(, "kernel_size": 3}]})"),
             Contains("field \"out_channels\": expected at most"));
  CHECK_THAT(error(head + R"({"type": "maxpool2d", "kernel_size": [2, )" + big + "]}]}"),
             Contains("layer 1 (maxpool2d): field \"kernel_size\": expected at most"));
  CHECK_THAT(error(head + R"({"type": "avgpool2d", "kernel_size": 2, "stride": )" + big + "}]}"),
             Contains("field \"stride\": expected at most"));
  CHECK_THAT(error(head + conv + R"("padding": -1}]})"), Contains("expected a non-negative integer or [h, w]"));
  // the limits themselves are accepted
  CHECK(std::get<Linear>(
            parse_model_spec(head + R"({"type": "linear", "out_features": 2147483647, "in_features": 2147483647}]})")
                .layers[1])
            .out_features == 2147483647);
  CHECK(parse_model_spec(R"({"input": [2147483647])" + relu).input == Shape{2147483647});
  CHECK(parse_model_spec(R"({"input": [1)" + repeat(", 1", 62) + "]" + relu).input.size() == 63);
  for (const auto& [text, says] : hostile) {
    const std::string e = error(text);
    INFO(e.substr(0, 500));
    for (const auto& s : says) CHECK_THAT(e, Contains(s));
    CHECK(e.size() < 300);
  }
  CHECK_THROWS_WITH(load_model_spec("/no/such/model.json"), Contains("/no/such/model.json") && Contains("cannot open"));
}

namespace {

bool forked_child = false;

}  // namespace

// LeakSanitizer asks this at exit: a child forked from the multithreaded test process and ended by exit()
// misses its parent's threads, whose memory it would report as leaked
extern "C" int __lsan_is_turned_off() { return forked_child ? 1 : 0; }

namespace {

/// Runs `crash` in a child process that writes an AtomicFile into `dir` with the cleanup handlers installed;
/// its wait status.
template <class F>
int crashed_child(const test::TempDir& dir, F crash) {
  const pid_t pid = fork();
  if (pid == 0) {
    forked_child = true;
    for (int s = 1; s < NSIG; ++s) std::signal(s, SIG_DFL);  // not Catch's handlers, which report and go on
    detail::install_cleanup_handlers();
    detail::AtomicFile f(dir / "k.npy");
    f.stream() << "partial";
    f.stream().flush();
    crash();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

int overflow_the_stack(int n) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(n);
  return n > 0 ? overflow_the_stack(n + 1) + frame[0] : 0;
}

}  // namespace

TEST_CASE("a crash, std::terminate or exit() removes the temporary outputs", "[io][errors]") {
  test::TempDir dir("crash");
  const auto left = [&] { return dir.entries(); };
  // std::terminate: an exception escaping a noexcept function or an OpenMP region
  int status = crashed_child(dir, [] { std::terminate(); });
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT));
  CHECK(left().empty());
  // exit() from a library (libgomp's fatal errors call it)
  status = crashed_child(dir, [] { std::exit(3); });
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 3));
  CHECK(left().empty());
  // a real invalid access, and a stack overflow (the handler runs on its own stack)
  status = crashed_child(dir, [] {
    volatile int* volatile nowhere = nullptr;
    *nowhere = 1;
  });
  CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(left().empty());
  status = crashed_child(dir, [] { overflow_the_stack(1); });
  CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(left().empty());
  // without the handlers the temporary file would stay (so the checks above can fail)
  const pid_t pid = fork();
  if (pid == 0) {
    for (int s = 1; s < NSIG; ++s) std::signal(s, SIG_DFL);
    detail::AtomicFile f(dir / "k.npy");
    std::abort();
  }
  waitpid(pid, &status, 0);
  CHECK(left().size() == 1);
}
