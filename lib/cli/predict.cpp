// `xntk predict`: kernel predictions of gradient-descent training (neural-tangents' predict module) from
// kernel files, at the requested step counts or times, written as (T, N, O) and (T, M, O) float64 arrays.

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>

#include "cli/commands.hpp"
#include "cli/inputs.hpp"
#include "io/file.hpp"
#include "quote.hpp"
#include "xntk/dynamics.hpp"
#include "xntk/io.hpp"

namespace xntk::cli {
namespace {

/// "inf" or a non-negative finite number.
double parse_time(const std::string& s) {
  if (s == "inf" || s == "infinity") return std::numeric_limits<double>::infinity();
  char* end = nullptr;
  errno = 0;
  const double t = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(t) || t < 0)
    throw Error("--time: " + detail::quote(s) + " is not a time; expected a non-negative number or inf");
  return t;
}

}  // namespace

void predict(const PredictArgs& args) {
  // the outputs first: an unwritable destination fails before the work
  detail::AtomicFile out(args.output);
  std::optional<detail::AtomicFile> test_out;
  if (!args.test_output.empty()) test_out.emplace(args.test_output);

  std::vector<double> times;
  for (const auto& t : args.times) times.push_back(parse_time(t));
  const Loss kind = args.loss == "cross_entropy" ? Loss::cross_entropy : Loss::mse;

  const Tensor<double> k = read_data<double>(args.k_train, "--k-train");
  const Tensor<double> y = read_targets<double>(args.y, "--y");
  std::optional<Tensor<double>> kt, f0, f0t;
  if (!args.k_test.empty()) kt = read_data<double>(args.k_test, "--k-test");
  if (!args.f0_train.empty()) f0 = read_data<double>(args.f0_train, "--f0-train");
  if (!args.f0_test.empty()) f0t = read_data<double>(args.f0_test, "--f0-test");
  PredictInputs<double> in{.k_train = k, .y = y};
  if (kt) in.k_test = TensorRef<double>(*kt);
  if (f0) in.f0_train = TensorRef<double>(*f0);
  if (f0t) in.f0_test = TensorRef<double>(*f0t);

  Predictions<double> p;
  try {
    if (!args.steps.empty()) {
      p = predict_steps(in, kind, args.lr, args.steps);
    } else {
      if (args.lr == 0 && !std::all_of(times.begin(), times.end(), [](double t) { return std::isinf(t); }))
        throw Error("--time: finite times need --lr");
      // the limit t = ∞ does not depend on the learning rate
      const bool only_infinity = std::all_of(times.begin(), times.end(), [](double t) { return std::isinf(t); });
      p = predict_time(in, args.lr > 0 ? args.lr : only_infinity ? 1.0 : 0.0, times, args.ridge);
    }
  } catch (const Error& e) {
    // the library names the input; the command line names its file
    const std::string what = e.what();
    const std::pair<const char*, std::pair<std::string, const char*>> inputs[] = {
        {"the training kernel", {args.k_train, "--k-train"}},
        {"the targets", {args.y, "--y"}},
        {"the test kernel", {args.k_test, "--k-test"}},
        {"the initial training outputs", {args.f0_train, "--f0-train"}},
        {"the initial test outputs", {args.f0_test, "--f0-test"}}};
    for (const auto& [prefix, file] : inputs)
      if (what.rfind(prefix, 0) == 0 && !file.first.empty())
        throw Error(file.first + " (" + file.second + "): " + what);
    throw;
  }
  write_npy(out.stream(), p.train);
  if (test_out) write_npy(test_out->stream(), p.test);
  // every output finished before any is renamed
  out.close();
  if (test_out) test_out->close();
  out.commit();
  if (test_out) test_out->commit();
}

}  // namespace xntk::cli
