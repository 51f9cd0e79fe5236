// What `xntk analyze` reads, apart from what it prints (so that a fuzz harness runs the same checks): the
// kernel, the components, and whether they come from one run.

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "cli/commands.hpp"
#include "io/checksum.hpp"
#include "io/mapped.hpp"
#include "quote.hpp"

namespace xntk::cli {

const unsigned char* AnalyzeInput::mapped_data() const { return mapped->data() + info.data_offset; }

AnalyzeInput read_analyze_input(const AnalyzeArgs& args) {
  AnalyzeInput in;
  in.info = read_npy_info(args.kernel);
  if (detail::readable_in_place(in.info))
    in.mapped = detail::map_npy(args.kernel, in.info);
  else
    in.kernel = read_npy<double>(args.kernel);
  if (args.components.empty()) return in;
  std::map<std::string, std::string> metadata;
  in.components = read_safetensors<double>(args.components, &metadata);
  for (const auto& c : in.components)
    if (c.tensor.shape() != in.info.shape)
      throw Error(args.components + ": component " + detail::quote(c.name) + " has shape " +
                  to_string(c.tensor.shape()) + ", expected the shape " + to_string(in.info.shape) + " of " +
                  args.kernel);
  // xntk compute records which kernel its components belong to: two runs writing the same outputs at once
  // may leave the kernel of one and the components of the other
  if (const auto it = metadata.find("kernel_checksum"); it != metadata.end()) {
    const std::string have =
        in.visit([&](auto k) { return detail::kernel_checksum(k.data(), k.size(), in.info.itemsize); });
    if (it->second != have) {
      const auto run = metadata.find("run_id");
      throw Error(args.components + ": written for another kernel than " + args.kernel + " (its kernel_checksum " +
                  detail::quote(it->second) + (run != metadata.end() ? " of run " + detail::quote(run->second) : "") +
                  ", the kernel's " + have + "); expected the components of the same run");
    }
  }
  // files without the checksum (written by other tools) still hold the total
  for (const auto& c : in.components) {
    if (c.name != "total") continue;
    const auto [diff, scale] = in.visit([&](auto k) {
      double d = 0, s = 0;
      for (int64_t e = 0; e < k.size(); ++e) {
        const double v = static_cast<double>(k.data()[e]);
        d = std::max(d, std::abs(c.tensor[e] - v));
        s = std::max(s, std::abs(v));
      }
      return std::pair{d, s};
    });
    if (!(diff <= 1e-6 * scale))
      throw Error(args.components + ": its \"total\" differs from " + args.kernel + " (max difference " +
                  std::to_string(diff) + "); expected the components of the same kernel");
  }
  return in;
}

Analysis analyze_input(const AnalyzeInput& in, const AnalyzeArgs& args) {
  try {
    const AnalysisOptions options{.epsilon = in.info.itemsize == 4 ? double{std::numeric_limits<float>::epsilon()}
                                                                   : double{std::numeric_limits<double>::epsilon()}};
    return in.visit([&](auto k) { return xntk::analyze(k, in.components, options); });
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error((what.rfind("component", 0) == 0 ? args.components : args.kernel) + ": " + what);
  }
}

}  // namespace xntk::cli
