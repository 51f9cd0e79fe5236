#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <string>

#ifdef XNTK_HAVE_CBLAS
#include <cblas.h>
#endif

#include "backend/cpu/blas.hpp"
#include "backend/cpu/cpu.hpp"
#include "xntk/kernel.hpp"

namespace xntk::backend::cpu {

const char* blas_core() {
#ifdef XNTK_HAVE_CBLAS
  const char* core = openblas_get_corename();
  return core ? core : "";
#else
  return "";
#endif
}

const char* blas_core_upgrade(std::string_view core, bool avx2_fma, bool avx512) {
  if (core.empty() || !avx2_fma) return nullptr;
  std::string lower(core);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  // OpenBLAS's kernel sets with AVX2 + FMA code (0.3.21's names): its choice stands wherever it is one of them
  constexpr std::array<std::string_view, 6> kAvx2Cores{"haswell",        "zen",      "skylakex", "cooperlake",
                                                       "sapphirerapids", "excavator"};
  if (std::find(kAvx2Cores.begin(), kAvx2Cores.end(), lower) != kAvx2Cores.end()) return nullptr;
  return avx512 ? "SKYLAKEX" : "HASWELL";
}

void reexec_for_blas(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || std::getenv("XNTK_NO_BLAS_REEXEC") != nullptr) return;
  const std::string upgrade = blas_info().better_coretype;
  if (upgrade.empty() || setenv("OPENBLAS_CORETYPE", upgrade.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // the exec failed: go on with OpenBLAS's own choice
}

}  // namespace xntk::backend::cpu

namespace xntk {

BlasInfo blas_info() {
  using namespace backend::cpu;
  const char* better = blas_core_upgrade(blas_core(), supported(Isa::avx2), supported(Isa::avx512));
  return {blas_name(), blas_core(), better ? better : ""};
}

}  // namespace xntk
