// `xntk compute` at scale: --rows/--cols blocks, --resume after a kill (the kernel byte for byte that of an
// uninterrupted run), journals of other runs refused, and the shared-output path's bad input. The MPI
// equality test is a ctest of its own (tests/cli/check_mpi.cmake).

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../cli_run.hpp"
#include "../helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

bool skip() {
  if (!std::string(XNTK_CLI).empty()) return false;
  WARN("the xntk program is not built (XNTK_BUILD_CLI=OFF): skipped");
  return true;
}

/// A small MLP and `n` random inputs in `d`.
void write_inputs(const test::TempDir& d, int64_t n) {
  test::write_bytes(d / "model.json", R"({"input": [16], "layers": [{"type": "linear", "out_features": 64},
    {"type": "relu"}, {"type": "linear", "out_features": 3}]})");
  write_npy(d / "x.npy", test::randn<double>({n, 16}, 7));
}

/// Lines in a file (0 when it is absent).
int lines(const std::string& path) {
  std::ifstream in(path);
  int n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

/// Runs ARGS, killing it with SIGKILL once its journal holds `entries` finished tile pairs; true if it was
/// killed so (false: it ended first).
bool kill_after(const std::vector<std::string>& args, const test::TempDir& d, const std::string& journal, int entries) {
  const pid_t pid = test::spawn(args, d);
  for (int i = 0; i < 200000; ++i) {
    if (lines(d / journal) >= 1 + entries) {
      kill(pid, SIGKILL);
      int status;
      waitpid(pid, &status, 0);
      return WIFSIGNALED(status);
    }
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    usleep(200);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return false;
}

/// A safetensors file's bytes with its run_id value blanked (every run has its own).
std::string without_run_id(const std::string& bytes) {
  std::string s = bytes;
  const size_t at = s.find("\"run_id\":\"");
  if (at != std::string::npos)
    for (size_t i = at + 10; i < s.size() && s[i] != '"'; ++i) s[i] = '-';
  return s;
}

const std::vector<std::string> kCompute = {"compute", "model.json", "--x1", "x.npy", "--tile", "10", "--threads", "1"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

std::string line(const std::vector<std::string>& a) {
  std::string s;
  for (size_t i = 1; i < a.size(); ++i) s += (s.empty() ? "" : " ") + a[i];
  return "compute " + s;
}

}  // namespace

TEST_CASE("xntk compute --rows and --cols compute a block of the kernel", "[cli][scale]") {
  if (skip()) return;
  test::TempDir d("cli-rows");
  write_inputs(d, 40);
  REQUIRE(test::run("compute model.json --x1 x.npy -o k.npy", d).code == 0);
  const Tensor<double> k = read_npy<double>(d / "k.npy");  // (40, 40, 3, 3)
  auto block_of = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    Tensor<double> b({r1 - r0, c1 - c0, 3, 3});
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = c0; j < c1; ++j)
        for (int64_t e = 0; e < 9; ++e) b[((i - r0) * (c1 - c0) + (j - c0)) * 9 + e] = k[(i * 40 + j) * 9 + e];
    return b;
  };
  // the same sums in another grouping of the samples: equal to rounding
  const test::Run r = test::run("compute model.json --x1 x.npy --rows 5:17 --cols 20:40 -o b.npy", d);
  REQUIRE(r.code == 0);
  const Tensor<double> b = read_npy<double>(d / "b.npy");
  REQUIRE(b.shape() == Shape{12, 20, 3, 3});
  CHECK(test::rel_error(b, block_of(5, 17, 20, 40)) <= 1e-13);
  // rows only: all columns; equal ranges: the symmetric kernel of those samples; open ends
  REQUIRE(test::run("compute model.json --x1 x.npy --rows 30: -o r.npy", d).code == 0);
  CHECK(test::rel_error(read_npy<double>(d / "r.npy"), block_of(30, 40, 0, 40)) <= 1e-13);
  REQUIRE(test::run("compute model.json --x1 x.npy --rows :8 --cols 0:8 -o s.npy", d).code == 0);
  CHECK(test::rel_error(read_npy<double>(d / "s.npy"), block_of(0, 8, 0, 8)) <= 1e-13);
  // with --x2 the columns are its samples
  write_npy(d / "x2.npy", test::randn<double>({6, 16}, 8));
  REQUIRE(test::run("compute model.json --x1 x.npy --x2 x2.npy -o full2.npy --mode trace", d).code == 0);
  REQUIRE(test::run("compute model.json --x1 x.npy --x2 x2.npy --rows 3:4 --cols 2:5 -o b2.npy --mode trace", d).code ==
          0);
  const Tensor<double> f2 = read_npy<double>(d / "full2.npy"), b2 = read_npy<double>(d / "b2.npy");
  REQUIRE(b2.shape() == Shape{1, 3});
  for (int64_t j = 0; j < 3; ++j) CHECK(std::abs(b2[j] - f2[3 * 6 + 2 + j]) <= 1e-13 * std::abs(f2[3 * 6 + 2 + j]));

  // out of range, empty, malformed: exit 1, one line naming the option and the bound, no output
  for (const std::string bad : {"--rows 5:41", "--rows 7:7", "--cols 9:3", "--rows abc", "--rows 1:2:3", "--rows -1:3",
                                "--cols 0:7 --x2 x2.npy"}) {
    CAPTURE(bad);
    const test::Run e = test::run("compute model.json --x1 x.npy " + bad + " -o bad.npy", d);
    CHECK(e.code == 1);
    CHECK_THAT(e.err, Contains(bad.substr(0, 6)) && Contains("expected a:b with 0 <= a < b <="));
    CHECK(std::count(e.err.begin(), e.err.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(d / "bad.npy"));
  }
}

TEST_CASE("xntk compute --resume continues a killed run and its files equal an uninterrupted run's byte for byte",
          "[cli][scale][resume]") {
  if (skip()) return;
  test::TempDir d("cli-resume");
  write_inputs(d, 150);  // tiles of 10: 120 tile pairs, each synced and journaled
  const auto args = with(kCompute, {"-o", "k.npy", "--components", "c.safetensors", "--resume"});
  REQUIRE(test::run(line(with(kCompute, {"-o", "ref.npy", "--components", "ref.safetensors"})), d).code == 0);

  REQUIRE(kill_after(args, d, "k.npy.xntk-journal", 3));
  CHECK_FALSE(fs::exists(d / "k.npy"));
  CHECK_FALSE(fs::exists(d / "c.safetensors"));
  REQUIRE(fs::exists(d / "k.npy.xntk-partial"));
  REQUIRE(fs::exists(d / "c.safetensors.xntk-partial"));
  const int done = lines(d / "k.npy.xntk-journal") - 1;
  REQUIRE(done >= 3);
  // a power cut in the middle of the next entry: the torn line is ignored and its pair computed again
  {
    std::ofstream j(d / "k.npy.xntk-journal", std::ios::app);
    j << "done 4";
  }
  const std::string journal_before = test::read_bytes(d / "k.npy.xntk-journal");

  // a journal of another run is refused, naming what differs, and left as it was
  struct Other {
    std::vector<std::string> extra;
    std::string says;
  };
  for (const Other& o : {Other{{"--seed", "3"}, "the weights differ"}, Other{{"--mode", "trace"}, "the options"},
                         Other{{"--dtype", "float32"}, "the options"}}) {
    CAPTURE(o.says);
    const test::Run e = test::run(line(with(args, o.extra)), d);
    CHECK(e.code == 1);
    CHECK_THAT(e.err, Contains("k.npy.xntk-journal: the journal is of another run: " + o.says));
    CHECK_FALSE(fs::exists(d / "k.npy"));
  }
  const test::Run tile =
      test::run("compute model.json --x1 x.npy --threads 1 --tile 20 -o k.npy --components c.safetensors --resume", d);
  CHECK(tile.code == 1);
  CHECK_THAT(tile.err, Contains("continues a run with tiles of 10"));
  CHECK(test::read_bytes(d / "k.npy.xntk-journal") == journal_before);

  const test::Run r = test::run(line(args) + " --progress", d);
  REQUIRE(r.code == 0);
  // it computed only what was left: fewer than the 120 × 2 steps of the whole run
  CHECK_THAT(r.err, Contains(" of " + std::to_string((120 - done) * 2) + " steps (100%)"));
  CHECK(test::read_bytes(d / "k.npy") == test::read_bytes(d / "ref.npy"));
  CHECK(without_run_id(test::read_bytes(d / "c.safetensors")) ==
        without_run_id(test::read_bytes(d / "ref.safetensors")));
  // finished: the journal and the partial files are gone
  CHECK(d.entries() ==
        std::vector<std::string>{"c.safetensors", "k.npy", "model.json", "ref.npy", "ref.safetensors", "x.npy"});
}

TEST_CASE("a damaged journal, a missing partial file and outputs that cannot be shared are refused",
          "[cli][scale][resume]") {
  if (skip()) return;
  test::TempDir d("cli-resume-bad");
  write_inputs(d, 300);
  const auto args = with(kCompute, {"-o", "k.npy", "--resume"});
  REQUIRE(kill_after(args, d, "k.npy.xntk-journal", 2));
  std::string j = test::read_bytes(d / "k.npy.xntk-journal");
  const size_t second = j.find('\n') + 1;
  std::string damaged = j;
  damaged[second + 5] = damaged[second + 5] == '1' ? '2' : '1';  // the first entry's pair index
  test::write_bytes(d / "k.npy.xntk-journal", damaged);
  test::Run e = test::run(line(args), d);
  CHECK(e.code == 1);
  CHECK_THAT(e.err, Contains("k.npy.xntk-journal: line 2: a damaged line"));
  test::write_bytes(d / "k.npy.xntk-journal", j);
  fs::remove(d / "k.npy.xntk-partial");
  e = test::run(line(args), d);
  CHECK(e.code == 1);
  CHECK_THAT(e.err, Contains("its partial output k.npy.xntk-partial is missing"));

  for (const std::string bad : {"--method autograd -o k2.npy", "-o /dev/null"}) {
    CAPTURE(bad);
    e = test::run("compute model.json --x1 x.npy --resume " + bad, d);
    CHECK(e.code == 1);
    CHECK_THAT(e.err, Contains("--resume: "));
  }
  fs::create_directory(d / "dir.npy");
  e = test::run("compute model.json --x1 x.npy --resume -o dir.npy", d);
  CHECK(e.code == 1);
  CHECK_THAT(e.err, Contains("dir.npy: is a directory"));
}

TEST_CASE("xntk analyze --extremes and --top agree with the dense eigensolver", "[cli][scale][analysis]") {
  if (skip()) return;
  test::TempDir d("cli-lanczos");
  write_inputs(d, 60);
  REQUIRE(test::run("compute model.json --x1 x.npy -o k.npy", d).code == 0);  // a 180 x 180 matrix
  REQUIRE(test::run("compute model.json --x1 x.npy --mode trace --dtype float32 -o t.npy", d).code == 0);
  for (const std::string file : {"k.npy", "t.npy"}) {
    CAPTURE(file);
    const test::Run dense = test::run("analyze " + file + " --json", d);
    REQUIRE(dense.code == 0);
    const test::Run r = test::run("analyze " + file + " --extremes --top 3 --vectors v.npy --json", d);
    if (r.code == 1 && r.err.find("without Spectra") != std::string::npos) {
      WARN("built without Spectra: --extremes not tested");
      return;
    }
    REQUIRE(r.code == 0);
    const auto want = nlohmann::json::parse(dense.out), got = nlohmann::json::parse(r.out);
    const std::vector<double> ev = want["eigenvalues"].get<std::vector<double>>();  // ascending
    const double lmax = want["lambda_max"].get<double>();
    // the iterations stop at a residual of 1e-10 relative to the eigenvalue
    CHECK(std::abs(got["lambda_max"].get<double>() - lmax) <= 1e-9 * lmax);
    CHECK(std::abs(got["lambda_min"].get<double>() - want["lambda_min"].get<double>()) <= 1e-9 * lmax);
    CHECK(std::abs(got["condition"].get<double>() / want["condition"].get<double>() - 1) <= 1e-6);
    CHECK(std::abs(got["trace"].get<double>() - want["trace"].get<double>()) <= 1e-12 * want["trace"].get<double>());
    for (int i = 0; i < 3; ++i)
      CHECK(std::abs(got["top"][i].get<double>() - ev[ev.size() - 1 - static_cast<size_t>(i)]) <= 1e-9 * lmax);
    CHECK(got["eigensolver"].get<std::string>().rfind("lanczos", 0) == 0);
    CHECK(got["effective_rank"].is_null());
    // the eigenvectors: unit length, K v = λ v
    const Tensor<double> v = read_npy<double>(d / "v.npy");
    const int64_t size = static_cast<int64_t>(ev.size());
    REQUIRE(v.shape() == Shape{3, size});
    const Tensor<double> k = read_npy<double>(d / file);
    const bool trace = k.rank() == 2;
    for (int64_t c = 0; c < 3; ++c) {
      double norm = 0, residual = 0;
      for (int64_t a = 0; a < size; ++a) {
        double kv = 0;
        for (int64_t b = 0; b < size; ++b) {
          // row a = n·O + o, column b = m·O + o' of the full kernel (N, N, O, O)
          const double kab = trace ? k[a * size + b] : k[(((a / 3) * 60 + b / 3) * 3 + a % 3) * 3 + b % 3];
          kv += kab * v[c * size + b];
        }
        norm += v[c * size + a] * v[c * size + a];
        residual = std::max(residual, std::abs(kv - got["top"][c].get<double>() * v[c * size + a]));
      }
      CHECK(std::abs(norm - 1) <= 1e-10);
      CHECK(residual <= 1e-8 * lmax);
    }
  }
  // bad input: one line, exit 1 (2 for usage)
  write_npy(d / "rect.npy", test::randn<double>({4, 5}, 1));
  {
    Tensor<float> t = read_npy<float>(d / "t.npy"), u = t;
    t[7 * 60 + 3] = std::numeric_limits<float>::quiet_NaN();
    u[59 * 60 + 59] = std::numeric_limits<float>::infinity();
    write_npy(d / "nan.npy", t);
    write_npy(d / "inf.npy", u);
  }
  struct Bad {
    std::string args, says;
    int code;
  };
  for (const Bad& b : {Bad{"k.npy --extremes --components c.safetensors", "--components: not with --extremes", 1},
                       Bad{"rect.npy --extremes", "expected Θ(X, X)", 1},
                       Bad{"t.npy --top 60", "--top 60: expected fewer than the matrix's 60", 1},
                       Bad{"t.npy --vectors v2.npy", "--vectors needs --top", 2},
                       Bad{"nan.npy --extremes", "nan.npy: row 7 of the 60 x 60 matrix holds NaN or Inf", 1},
                       Bad{"inf.npy --top 2 --vectors v2.npy", "inf.npy: row 59 of the 60 x 60 matrix holds NaN", 1}}) {
    CAPTURE(b.args);
    test::write_bytes(d / "c.safetensors", "");
    const test::Run e = test::run("analyze " + b.args, d);
    CHECK(e.code == b.code);
    CHECK_THAT(e.err, Contains(b.says));
    CHECK_FALSE(fs::exists(d / "v2.npy"));
  }
}

TEST_CASE("xntk analyze --extremes stops at a Rayleigh quotient below the singularity tolerance",
          "[cli][scale][analysis]") {
  if (skip()) return;
  // 400 samples of a 2-64-1 tanh MLP (257 parameters): the kernel's rank is at most 257, and in float32 all
  // but 16 eigenvalues sit in a cluster under the tolerance 400 · ε · λmax. Resolving λmin inside that
  // cluster would take up to 400 products; a Ritz vector whose Rayleigh quotient is under the tolerance
  // already proves the matrix singular to working precision, which is what the dense solver says too.
  test::TempDir d("cli-lanczos-singular");
  test::write_bytes(d / "model.json", R"({"input": [2], "layers": [{"type": "linear", "out_features": 64},
    {"type": "tanh"}, {"type": "linear", "out_features": 1}]})");
  write_npy(d / "x.npy", test::randn<double>({400, 2}, 3));
  REQUIRE(test::run("compute model.json --x1 x.npy --mode trace --dtype float32 -o t.npy", d).code == 0);
  const test::Run dense = test::run("analyze t.npy --json", d);
  REQUIRE(dense.code == 0);
  const auto want = nlohmann::json::parse(dense.out);
  REQUIRE_FALSE(want["positive_definite"].get<bool>());
  const test::Run r = test::run("analyze t.npy --extremes --json", d);
  if (r.code == 1 && r.err.find("without Spectra") != std::string::npos) {
    WARN("built without Spectra: --extremes not tested");
    return;
  }
  REQUIRE(r.code == 0);
  const auto got = nlohmann::json::parse(r.out);
  CHECK_FALSE(got["positive_definite"].get<bool>());
  CHECK(got["condition"].is_null());
  const double bound = got["lambda_min_upper_bound"].get<double>(), tolerance = got["tolerance"].get<double>();
  CHECK(bound <= tolerance);
  CHECK(want["lambda_min"].get<double>() <= bound);  // an upper bound indeed
  CHECK(std::abs(tolerance / want["tolerance"].get<double>() - 1) <= 1e-9);
  CHECK(got["lambda_min_products"].get<int64_t>() <= 20);
  CHECK_THAT(got["note"].get<std::string>(), Contains("singular to working precision"));
  // --resolve-min iterates on until λmin is known to the file's precision, ε·λmax (its residual)
  const test::Run resolved = test::run("analyze t.npy --extremes --resolve-min --json", d);
  REQUIRE(resolved.code == 0);
  const auto res = nlohmann::json::parse(resolved.out);
  REQUIRE(res["lambda_min_converged"].get<bool>());
  const double lmax = want["lambda_max"].get<double>(), eps = 1.1920928955078125e-07;
  CHECK(res["lambda_min_residual"].get<double>() <= eps * lmax);
  CHECK(std::abs(res["lambda_min"].get<double>() - want["lambda_min"].get<double>()) <= eps * lmax);
  CHECK_FALSE(res["positive_definite"].get<bool>());
  CHECK(res["condition"].is_null());
  CHECK(res["lambda_min_products"].get<int64_t>() > got["lambda_min_products"].get<int64_t>());
  const test::Run alone = test::run("analyze t.npy --resolve-min", d);
  CHECK(alone.code == 2);
  CHECK_THAT(alone.err, Contains("--resolve-min needs --extremes"));
}
