// libFuzzer harness: xntk's .npy readers. Any input must either be refused with one short xntk::Error or be
// read; what is read as floats must survive a round trip through the writer unchanged (bit for bit).

#include <cstring>
#include <sstream>

#include "memfile.hpp"
#include "xntk/io.hpp"

namespace {

template <class T>
void round_trip(const xntk::Tensor<T>& t, xntk::fuzz::MemFile& copy) {
  std::ostringstream out;
  xntk::write_npy(out, t);
  copy.set(out.str());
  const auto back = xntk::read_npy<T>(copy.path());
  if (back.shape() != t.shape() ||
      (t.size() > 0 && std::memcmp(back.data(), t.data(), sizeof(T) * static_cast<size_t>(t.size())) != 0))
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static xntk::fuzz::MemFile file("fuzz.npy"), copy("copy.npy");
  file.set(data, size);
  try {
    const xntk::NpyInfo info = xntk::read_npy_info(file.path());
    if (info.itemsize == 4)
      round_trip(xntk::read_npy<float>(file.path()), copy);
    else
      round_trip(xntk::read_npy<double>(file.path()), copy);
  } catch (const xntk::Error& e) {
    xntk::fuzz::check_message(e.what());
  }
  // the class-label reader (xntk train/predict) takes integer arrays too: read, or refused the same way
  try {
    const auto labels = xntk::read_npy_labels<double>(file.path());
    if (labels.size() != xntk::numel(labels.shape())) std::abort();
  } catch (const xntk::Error& e) {
    xntk::fuzz::check_message(e.what());
  }
  return 0;
}
