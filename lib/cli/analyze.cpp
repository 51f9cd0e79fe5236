// `xntk analyze`: the spectrum summary of a kernel file (and its components) as text or JSON.

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "xntk/analysis.hpp"

namespace xntk::cli {
namespace {

using ordered_json = nlohmann::ordered_json;

/// JSON has no infinity or NaN: those become null (the note says why).
ordered_json number(double v) { return std::isfinite(v) ? ordered_json(v) : ordered_json(nullptr); }

ordered_json spectrum_json(const Spectrum& s) {
  ordered_json j;
  j["trace"] = s.trace;
  j["lambda_max"] = s.lambda_max;
  j["lambda_min"] = s.lambda_min;
  j["condition"] = s.positive_definite ? number(s.condition) : ordered_json(nullptr);
  j["positive_definite"] = s.positive_definite;
  j["effective_rank"] = s.effective_rank;
  j["numerical_rank"] = s.numerical_rank;
  j["tolerance"] = s.tolerance;
  if (!s.note.empty()) j["note"] = s.note;
  return j;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string condition_text(const Spectrum& s) { return s.positive_definite ? fmt(s.condition) : "inf"; }

void print_text(const std::string& path, const Analysis& a, bool eigenvalues) {
  const Spectrum& s = a.spectrum;
  const int64_t size = static_cast<int64_t>(s.eigenvalues.size());
  std::cout << path << ": " << name(a.mode) << " kernel, N = " << a.samples << " samples, O = " << a.outputs
            << " outputs, " << size << " x " << size << " matrix"
            << (a.mode == Mode::diagonal ? " (block-diagonal: one N x N block per output)" : "") << "\n";
  std::cout << "  trace            " << fmt(s.trace) << "\n"
            << "  lambda_max       " << fmt(s.lambda_max) << "\n"
            << "  lambda_min       " << fmt(s.lambda_min) << "\n"
            << "  condition        " << condition_text(s) << "\n"
            << "  effective rank   " << fmt(s.effective_rank) << " (exp of the entropy of the normalised eigenvalues)\n"
            << "  numerical rank   " << s.numerical_rank << " of " << size << " (eigenvalues > " << fmt(s.tolerance)
            << ")\n"
            << "  eigensolver      " << s.eigensolver << "\n";
  if (!s.note.empty()) std::cout << "  note: " << s.note << "\n";
  if (eigenvalues) {
    std::cout << "  eigenvalues (descending):";
    for (auto it = s.eigenvalues.rbegin(); it != s.eigenvalues.rend(); ++it) std::cout << " " << fmt(*it);
    std::cout << "\n";
  }
  if (!a.per_output.empty()) {
    std::cout << "  per output:\n";
    for (size_t o = 0; o < a.per_output.size(); ++o)
      std::cout << "    " << o << ": trace " << fmt(a.per_output[o].trace) << ", lambda_max "
                << fmt(a.per_output[o].lambda_max) << ", lambda_min " << fmt(a.per_output[o].lambda_min)
                << ", condition " << condition_text(a.per_output[o]) << "\n";
  }
  if (!a.components.empty()) {
    std::printf("  %-20s %10s %14s %14s %14s\n", "component", "share", "trace", "condition", "eff. rank");
    std::fflush(stdout);
    for (const auto& c : a.components) {
      std::printf("  %-20s %10.4f %14s %14s %14s\n", c.name.c_str(), c.share, fmt(c.trace).c_str(),
                  condition_text(c.spectrum).c_str(), fmt(c.spectrum.effective_rank).c_str());
    }
    std::fflush(stdout);
  }
}

}  // namespace

void analyze(const AnalyzeArgs& args) {
  const AnalyzeInput in = read_analyze_input(args);
  const Analysis a = analyze_input(in, args);
  const NpyInfo& info = in.info;

  if (!args.json) {
    print_text(args.kernel, a, args.eigenvalues);
    return;
  }
  ordered_json j;
  j["file"] = args.kernel;
  j["mode"] = name(a.mode);
  j["samples"] = a.samples;
  j["outputs"] = a.outputs;
  j["size"] = a.spectrum.eigenvalues.size();
  j["dtype"] = info.itemsize == 4 ? "float32" : "float64";
  j["asymmetry"] = a.asymmetry;
  j["eigensolver"] = a.spectrum.eigensolver;
  const ordered_json whole = spectrum_json(a.spectrum);  // named: items() does not keep a temporary alive
  for (const auto& [key, value] : whole.items()) j[key] = value;
  j["eigenvalues"] = a.spectrum.eigenvalues;
  if (!a.per_output.empty()) {
    j["per_output"] = ordered_json::array();
    for (const auto& s : a.per_output) j["per_output"].push_back(spectrum_json(s));
  }
  if (!args.components.empty()) {
    j["components"] = ordered_json::array();
    double shares = 0;
    for (const auto& c : a.components) {
      ordered_json cj;
      cj["name"] = c.name;
      cj["share"] = number(c.share);
      const ordered_json summary = spectrum_json(c.spectrum);
      for (const auto& [key, value] : summary.items()) cj[key] = value;
      j["components"].push_back(cj);
      shares += c.share;
    }
    j["shares_sum"] = number(shares);
  }
  // a file name is bytes, not necessarily UTF-8, which dump() would throw on: replace what is not
  std::cout << j.dump(-1, ' ', false, ordered_json::error_handler_t::replace) << std::endl;
}

}  // namespace xntk::cli
