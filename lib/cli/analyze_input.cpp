// What `xntk analyze` reads, apart from what it prints (so that a fuzz harness runs the same checks): the
// kernel, the components, and whether they come from one run.

#include <algorithm>
#include <cmath>
#include <map>

#include "cli/commands.hpp"
#include "io/checksum.hpp"
#include "quote.hpp"

namespace xntk::cli {

AnalyzeInput read_analyze_input(const AnalyzeArgs& args) {
  AnalyzeInput in{read_npy_info(args.kernel), read_npy<double>(args.kernel), {}};
  if (args.components.empty()) return in;
  std::map<std::string, std::string> metadata;
  in.components = read_safetensors<double>(args.components, &metadata);
  for (const auto& c : in.components)
    if (c.tensor.shape() != in.kernel.shape())
      throw Error(args.components + ": component " + detail::quote(c.name) + " has shape " +
                  to_string(c.tensor.shape()) + ", expected the shape " + to_string(in.kernel.shape()) + " of " +
                  args.kernel);
  // xntk compute records which kernel its components belong to: two runs writing the same outputs at once
  // may leave the kernel of one and the components of the other
  if (const auto it = metadata.find("kernel_checksum"); it != metadata.end()) {
    const std::string have = detail::kernel_checksum(in.kernel, in.info.itemsize);
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
    double diff = 0, scale = 0;
    for (int64_t e = 0; e < in.kernel.size(); ++e) {
      diff = std::max(diff, std::abs(c.tensor[e] - in.kernel[e]));
      scale = std::max(scale, std::abs(in.kernel[e]));
    }
    if (!(diff <= 1e-6 * scale))
      throw Error(args.components + ": its \"total\" differs from " + args.kernel + " (max difference " +
                  std::to_string(diff) + "); expected the components of the same kernel");
  }
  return in;
}

Analysis analyze_input(const AnalyzeInput& in, const AnalyzeArgs& args) {
  try {
    return xntk::analyze(in.kernel, in.components,
                         {.epsilon = in.info.itemsize == 4 ? double{std::numeric_limits<float>::epsilon()} : 0.0});
  } catch (const Error& e) {
    const std::string what = e.what();
    throw Error((what.rfind("component", 0) == 0 ? args.components : args.kernel) + ": " + what);
  }
}

}  // namespace xntk::cli
