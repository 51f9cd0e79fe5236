// libFuzzer harness: the model JSON parser (parse_model_spec). Any text must either be refused with one short
// xntk::Error or be parsed; a parsed spec written back by model_spec_to_json must parse to the same text.

#include <string>

#include "memfile.hpp"
#include "xntk/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
  return 0;
}
