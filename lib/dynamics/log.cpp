// The JSON-lines form of a training log (docs/dynamics.md, "Metrics"): one object per logged step, keys in a
// fixed order, absent metrics left out, non-finite numbers (an infinite condition number) as null.

#include <cmath>
#include <nlohmann/json.hpp>

#include "xntk/train.hpp"

namespace xntk {

namespace {

nlohmann::ordered_json number(double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nullptr; }

nlohmann::ordered_json named(const std::vector<std::pair<std::string, double>>& values) {
  nlohmann::ordered_json o = nlohmann::ordered_json::object();
  for (const auto& [name, v] : values) o[name] = number(v);
  return o;
}

}  // namespace

std::string log_line(const StepLog& log) {
  nlohmann::ordered_json j;
  j["step"] = log.step;
  j["epoch"] = log.epoch;
  j["train_loss"] = number(log.train_loss);
  if (log.test_loss) j["test_loss"] = number(*log.test_loss);
  j["weight_change"] = number(log.weight_change);
  j["weight_change_per_tensor"] = named(log.weight_change_per_tensor);
  if (log.probe) {
    const ProbeMetrics& p = *log.probe;
    nlohmann::ordered_json q;
    q["trace"] = number(p.trace);
    q["lambda_max"] = number(p.lambda_max);
    q["lambda_min"] = number(p.lambda_min);
    q["condition"] = number(p.condition);
    q["effective_rank"] = number(p.effective_rank);
    q["component_share"] = named(p.component_share);
    q["kernel_change"] = number(p.kernel_change);
    q["alignment_initial"] = number(p.alignment_initial);
    if (p.alignment_targets) q["alignment_targets"] = number(*p.alignment_targets);
    q["linearization_gap"] = number(p.linearization_gap);
    q["linearization_gap_relative"] = number(p.linearization_gap_relative);
    j["probe"] = std::move(q);
  }
  return j.dump();
}

}  // namespace xntk
