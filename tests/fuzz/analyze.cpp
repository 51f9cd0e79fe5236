// libFuzzer harness: what `xntk analyze K.npy [--components C.safetensors]` reads, through the same code
// (cli::read_analyze_input, cli::analyze_input). The input is a flag byte (bit 0: with components), a 4-byte
// little-endian length L, L bytes of K.npy and the rest as C.safetensors. Any input must be refused with one
// short xntk::Error or analysed.

#include <cstring>

#include "cli/commands.hpp"
#include "memfile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static xntk::fuzz::MemFile kernel("K.npy"), components("C.safetensors");
  if (size < 5) return 0;
  uint32_t length;
  std::memcpy(&length, data + 1, 4);
  const size_t npy = std::min<size_t>(length, size - 5);
  kernel.set(data + 5, npy);
  components.set(data + 5 + npy, size - 5 - npy);
  xntk::cli::AnalyzeArgs args;
  args.kernel = kernel.path();
  if (data[0] & 1) args.components = components.path();
  try {
    const auto in = xntk::cli::read_analyze_input(args);
    const xntk::Analysis a = xntk::cli::analyze_input(in, args);
    if (a.spectrum.eigenvalues.empty()) std::abort();
  } catch (const xntk::Error& e) {
    xntk::fuzz::check_message(e.what());
  }
  return 0;
}
