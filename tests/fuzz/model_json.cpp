// libFuzzer harness: the model JSON parser (parse_model_spec) and the model it describes. Any text must either
// be refused with one short xntk::Error or be parsed; a parsed spec written back by model_spec_to_json must
// parse to the same text; and building the model from it (shapes through every layer and block, parameters
// allocated and drawn) must either succeed or end in one short xntk::Error. Tensors are limited to 16 MB here,
// so that a model asking for more is refused as one asking for more than the machine has would be.

#include <string>

#include "checked.hpp"
#include "memfile.hpp"
#include "xntk/io.hpp"
#include "xntk/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool limited = (xntk::detail::set_tensor_byte_limit(16e6), true);
  (void)limited;
  const std::string text(reinterpret_cast<const char*>(data), size);
  xntk::ModelSpec spec;
  try {
    spec = xntk::parse_model_spec(text, "fuzz.json");
  } catch (const xntk::Error& e) {
    xntk::fuzz::check_message(e.what());
    return 0;
  }
  const std::string once = xntk::model_spec_to_json(spec);
  if (xntk::model_spec_to_json(xntk::parse_model_spec(once, "written.json")) != once) std::abort();
  try {
    const xntk::Sequential<float> model(spec, 0);
    if (model.outputs() < 1 || model.num_parameters() < 0) std::abort();
  } catch (const xntk::Error& e) {
    xntk::fuzz::check_message(e.what());
  }
  return 0;
}
