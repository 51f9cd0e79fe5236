// `xntk train` and `xntk predict`: trained weights equal PyTorch's recorded runs (tests/dynamics/fixtures),
// integer labels read as classes, one JSON line per logged step, kernel predictions equal a direct solve,
// and bad input ends in one message, the right exit code and no output file.

#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../cli_run.hpp"
#include "../helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(XNTK_SOURCE_DIR) / "tests" / "dynamics" / "fixtures";

std::string fixture(const std::string& name, const std::string& file) {
  return "'" + (kFixtures / name / file).string() + "'";
}

/// Largest relative difference of the trained weights from PyTorch's, over all tensors.
double weights_error(const std::string& trained, const std::string& name) {
  const auto got = read_safetensors<double>(trained),
             want = read_safetensors<double>((kFixtures / name / "final.safetensors").string());
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i].name == want[i].name);
    worst = std::max(worst, test::rel_error(got[i].tensor, want[i].tensor));
  }
  return worst;
}

bool skip() {
  if (!std::string(XNTK_CLI).empty()) return false;
  WARN("the xntk program is not built (XNTK_BUILD_CLI=OFF): skipped");
  return true;
}

}  // namespace

TEST_CASE("xntk train reproduces PyTorch's recorded training runs", "[cli][train]") {
  if (skip()) return;
  test::TempDir d("cli-train");
  // plain SGD on the linearised network with α = 2, full batch
  const std::string lin = "linearized_alpha_mse";
  test::Run r = test::run("train " + fixture(lin, "model.json") + " --x " + fixture(lin, "x.npy") + " --y " +
                              fixture(lin, "y.npy") + " --weights " + fixture(lin, "weights.safetensors") +
                              " --lr 0.05 --steps 100 --alpha 2 --linearized --log log.jsonl -o w.safetensors",
                          d);
  REQUIRE(r.code == 0);
  CHECK(r.err.empty());
  CHECK(weights_error(d / "w.safetensors", lin) <= 1e-10);
  // one line per step (and step 0), each a JSON object; the losses are PyTorch's
  std::istringstream log(test::read_bytes(d / "log.jsonl"));
  const auto losses = read_npy<double>((kFixtures / lin / "losses.npy").string());
  const size_t tensors = read_safetensors<double>((kFixtures / lin / "weights.safetensors").string()).size();
  std::string line;
  int64_t n = 0;
  while (std::getline(log, line)) {
    const auto j = nlohmann::json::parse(line);
    CHECK(j.at("step") == n);
    if (n < losses.size()) CHECK(j.at("train_loss").get<double>() == Approx(losses[n]).epsilon(1e-10));
    CHECK(j.at("weight_change_per_tensor").size() == tensors);
    ++n;
  }
  CHECK(n == 101);

  // Adam with weight decay, cross-entropy on target probabilities
  const std::string adam = "mlp_adam_ce_probabilities";
  r = test::run(
      "train " + fixture(adam, "model.json") + " --x " + fixture(adam, "x.npy") + " --y " + fixture(adam, "y.npy") +
          " --weights " + fixture(adam, "weights.safetensors") +
          " --optimizer adam --lr 0.01 --weight-decay 0.0001 --loss cross_entropy --steps 100 -o a.safetensors",
      d);
  REQUIRE(r.code == 0);
  CHECK(weights_error(d / "a.safetensors", adam) <= 1e-10);

  // SGD with momentum on mini-batches of 4 of a CNN, the labels as an int64 .npy as NumPy writes them
  const std::string cnn = "cnn_sgd_ce";
  const auto labels = read_npy<double>((kFixtures / cnn / "y.npy").string());
  std::vector<int64_t> ints;
  for (int64_t i = 0; i < labels.size(); ++i) ints.push_back(static_cast<int64_t>(labels[i]));
  test::write_bytes(d / "labels.npy", test::npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (" +
                                                          std::to_string(ints.size()) + ",), }",
                                                      test::raw(ints)));
  r = test::run("train " + fixture(cnn, "model.json") + " --x " + fixture(cnn, "x.npy") + " --y labels.npy --weights " +
                    fixture(cnn, "weights.safetensors") +
                    " --lr 0.05 --momentum 0.5 --batch-size 4 --loss cross_entropy --steps 100 -o c.safetensors "
                    "--log-every 0 --log c.jsonl",
                d);
  REQUIRE(r.code == 0);
  CHECK(weights_error(d / "c.safetensors", cnn) <= 1e-10);
  const std::string logged = test::read_bytes(d / "c.jsonl");
  CHECK(std::count(logged.begin(), logged.end(), '\n') == 2);  // --log-every 0: the first and the last step
}

TEST_CASE("xntk train logs the NTK metrics on a probe set", "[cli][train]") {
  if (skip()) return;
  test::TempDir d("cli-train-probe");
  save_model_spec(d / "m.json",
                  {.input = {3}, .layers = {Linear{.out_features = 8}, Tanh(), Linear{.out_features = 2}}});
  write_npy(d / "x.npy", test::randn<double>({6, 3}, 1));
  write_npy(d / "y.npy", test::randn<double>({6, 2}, 2));
  write_npy(d / "p.npy", test::randn<double>({5, 3}, 3));
  const test::Run r = test::run(
      "train m.json --x x.npy --y y.npy --x-test x.npy --y-test y.npy --probe p.npy --ntk-every 2 "
      "--log-every 1 --steps 4 --lr 0.1 --log log.jsonl -o w.safetensors",
      d);
  REQUIRE(r.code == 0);
  std::istringstream log(test::read_bytes(d / "log.jsonl"));
  std::string line;
  std::vector<int64_t> probed;
  while (std::getline(log, line)) {
    const auto j = nlohmann::json::parse(line);
    CHECK(j.contains("test_loss"));
    if (!j.contains("probe")) continue;
    probed.push_back(j.at("step"));
    const auto& p = j.at("probe");
    CHECK(p.at("trace").get<double>() > 0);
    CHECK(p.at("component_share").size() == 4);
    if (j.at("step") == 0) CHECK(p.at("kernel_change").get<double>() == 0);
  }
  CHECK(probed == std::vector<int64_t>{0, 2, 4});
}

TEST_CASE("xntk predict at t = inf solves the kernel system, and steps follow the GD recursion", "[cli][predict]") {
  if (skip()) return;
  test::TempDir d("cli-predict");
  const int64_t n = 5, m = 3;
  // a positive-definite trace kernel (N, N) and a test kernel (M, N)
  const auto a = test::randn<double>({n, 7}, 1), b = test::randn<double>({m, 7}, 2);
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> A(a.data(), n, 7),
      B(b.data(), m, 7);
  const Eigen::MatrixXd K = A * A.transpose(), Kt = B * A.transpose();
  Tensor<double> k({n, n}), kt({m, n});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) k[i * n + j] = K(i, j);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) kt[i * n + j] = Kt(i, j);
  const auto y = test::randn<double>({n, 2}, 3);
  write_npy(d / "k.npy", k);
  write_npy(d / "kt.npy", kt);
  write_npy(d / "y.npy", y);
  test::Run r =
      test::run("predict --k-train k.npy --y y.npy --k-test kt.npy --time inf -o p.npy --test-output q.npy", d);
  REQUIRE(r.code == 0);
  const auto p = read_npy<double>(d / "p.npy"), q = read_npy<double>(d / "q.npy");
  REQUIRE(p.shape() == Shape{1, n, 2});
  REQUIRE(q.shape() == Shape{1, m, 2});
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Y(y.data(), n, 2);
  const Eigen::MatrixXd want = Kt * K.ldlt().solve(Y);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t o = 0; o < 2; ++o) CHECK(q[i * 2 + o] == Approx(want(i, o)).epsilon(1e-9));
  for (int64_t e = 0; e < n * 2; ++e) CHECK(p[e] == Approx(y[e]).epsilon(1e-9));  // interpolates

  // two MSE steps of the function-space recursion f ← f − η (Θ/O) (2/(N·O)) (f − y) on the trace kernel
  r = test::run("predict --k-train k.npy --y y.npy --lr 0.01 --steps 0,2 -o s.npy", d);
  REQUIRE(r.code == 0);
  const auto s = read_npy<double>(d / "s.npy");
  REQUIRE(s.shape() == Shape{2, n, 2});
  Eigen::MatrixXd f = Eigen::MatrixXd::Zero(n, 2);
  for (int step = 0; step < 2; ++step) f -= 0.01 * (K / 2.0) * (2.0 / (n * 2.0)) * (f - Y);
  for (int64_t e = 0; e < n * 2; ++e) CHECK(std::abs(s[e]) <= 1e-12);  // f₀ = 0, through the eigenbasis
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < 2; ++o) CHECK(s[n * 2 + i * 2 + o] == Approx(f(i, o)).epsilon(1e-10));
}

TEST_CASE("xntk train and predict: bad input ends with one message, the right exit code and no output",
          "[cli][train][predict][errors]") {
  if (skip()) return;
  test::TempDir d("cli-train-bad");
  save_model_spec(d / "m.json",
                  {.input = {3}, .layers = {Linear{.out_features = 4}, Tanh(), Linear{.out_features = 2}}});
  write_npy(d / "x.npy", test::randn<double>({6, 3}, 1));
  write_npy(d / "y.npy", test::randn<double>({6, 2}, 2));
  write_npy(d / "y3.npy", test::randn<double>({6, 3}, 3));
  write_npy(d / "k.npy", test::randn<double>({6, 5}, 4));
  write_npy(d / "labels.npy", Tensor<double>({6}, std::vector<double>{0, 1, 1, 0, 2, 1}));
  const auto before = d.entries();
  struct Case {
    std::string args;
    int code;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"train m.json --x x.npy --y y3.npy --lr 0.1 --steps 2 -o w.st", 1, {"y3.npy (--y)", "(6, 3)"}},
      {"train m.json --x x.npy --y labels.npy --loss cross_entropy --lr 0.1 --steps 2 -o w.st",
       1,
       {"labels.npy (--y)", "label of sample 4 is 2"}},
      {"train m.json --x x.npy --y y.npy --lr 0 --steps 2 -o w.st", 2, {"--lr", "expected a finite number > 0"}},
      {"train m.json --x x.npy --y y.npy --lr inf --steps 2 -o w.st", 2, {"--lr"}},
      {"train m.json --x x.npy --y y.npy --lr 0.1 -o w.st", 2, {"--steps"}},
      {"train m.json --x x.npy --y y.npy --lr 0.1 --steps 2 --epochs 1 -o w.st", 2, {"--epochs"}},
      {"train m.json --x x.npy --y y.npy --lr 0.1 --steps 2 --ntk-every 1 -o w.st", 2, {"--probe"}},
      {"train m.json --x y.npy --y y.npy --lr 0.1 --steps 2 -o w.st", 1, {"y.npy (--x)", "expected (N, 3)"}},
      {"predict --k-train k.npy --y y.npy --lr 0.1 --steps 1 -o p.npy", 1, {"k.npy (--k-train)", "(6, 5)"}},
      {"predict --k-train k.npy --y y.npy --steps 1 -o p.npy", 2, {"--steps needs --lr"}},
      {"predict --k-train k.npy --y y.npy --k-test k.npy --time inf -o p.npy", 2, {"--test-output"}},
      {"predict --k-train k.npy --y y.npy --time -1 --lr 1 -o p.npy", 1, {"--time", "non-negative"}},
      {"predict --k-train k.npy --y y.npy --time 1 -o p.npy", 1, {"--time", "--lr"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.args);
    const test::Run r = test::run(c.args, d);
    CHECK(r.code == c.code);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    for (const auto& s : c.says) CHECK_THAT(r.err, Contains(s));
    CHECK(d.entries() == before);
  }
  // a learning rate that diverges: the step is named, the log keeps the steps so far, no weights
  const test::Run r = test::run("train m.json --x x.npy --y y.npy --lr 1e150 --steps 50 --log log.jsonl -o w.st", d);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("at step") && Contains("log.jsonl keeps the steps logged so far") &&
                        Contains("no weights written"));
  CHECK(!fs::exists(d / "w.st"));
  CHECK(!test::read_bytes(d / "log.jsonl").empty());
}
