// libFuzzer harness: xntk's safetensors reader. Any input must either be refused with one short xntk::Error
// or be read; what is read must survive a round trip through the writer (names, order, shapes, metadata and
// float64 values unchanged).

#include <cstring>
#include <sstream>

#include "memfile.hpp"
#include "xntk/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static xntk::fuzz::MemFile file("fuzz.safetensors"), copy("copy.safetensors");
  file.set(data, size);
  std::map<std::string, std::string> metadata;
  std::vector<xntk::NamedTensor<double>> tensors;
  try {
    tensors = xntk::read_safetensors<double>(file.path(), &metadata);
    (void)xntk::read_safetensors<float>(file.path());
  } catch (const xntk::Error& e) {
    xntk::fuzz::check_message(e.what());
    return 0;
  }
  std::ostringstream out;
  try {
    xntk::write_safetensors(out, tensors, metadata);
  } catch (const xntk::Error& e) {
    // the writer refuses what the reader accepts only for names it cannot write: none are possible
    std::abort();
  }
  copy.set(out.str());
  std::map<std::string, std::string> metadata2;
  const auto back = xntk::read_safetensors<double>(copy.path(), &metadata2);
  if (back.size() != tensors.size() || metadata2 != metadata) std::abort();
  for (size_t i = 0; i < back.size(); ++i) {
    const auto &a = back[i], &b = tensors[i];
    if (a.name != b.name || a.tensor.shape() != b.tensor.shape() ||
        (a.tensor.size() > 0 &&
         std::memcmp(a.tensor.data(), b.tensor.data(), sizeof(double) * static_cast<size_t>(a.tensor.size())) != 0))
      std::abort();
  }
  return 0;
}
