#include "io/json.hpp"

#include <unordered_set>
#include <vector>

#include "quote.hpp"
#include "xntk/error.hpp"

namespace xntk::detail {

using json = nlohmann::json;

json parse_json(std::string_view text, const std::string& where) {
  // nlohmann's parser is iterative, but dump() and comparisons recurse, and it keeps the last of two equal
  // keys: both are settled here, while parsing
  std::vector<std::unordered_set<std::string>> keys;  // of each open object, innermost last
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth)
          throw Error(where + ": arrays and objects nested deeper than " + std::to_string(kMaxJsonDepth) +
                      " levels; expected at most " + std::to_string(kMaxJsonDepth));
        if (event == json::parse_event_t::object_start) keys.emplace_back();
        break;
      case json::parse_event_t::object_end: keys.pop_back(); break;
      case json::parse_event_t::key:
        if (!keys.back().insert(parsed.get_ref<const std::string&>()).second)
          throw Error(where + ": duplicate key " + quote(parsed.get_ref<const std::string&>()) +
                      "; expected each key once per object");
        break;
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: ...; last read: '...'": the position
    // and the reason are what users need; what it read may be long or binary
    std::string what = e.what();
    if (const size_t p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    throw Error(where + ": not valid JSON: " + shorten(what));
  }
}

namespace {

void render(const json& v, std::string& out, size_t max, int depth) {
  constexpr int kMaxShownDepth = 8;
  switch (v.type()) {
    case json::value_t::string: out += quote(v.get_ref<const std::string&>()); return;
    case json::value_t::array:
    case json::value_t::object: {
      const bool object = v.is_object();
      out += object ? '{' : '[';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        if (out.size() >= max || depth >= kMaxShownDepth) {
          out += "...";
          break;
        }
        if (object) out += quote(it.key()) + ": ";
        render(*it, out, max, depth + 1);
      }
      out += object ? '}' : ']';
      return;
    }
    case json::value_t::binary: out += "<binary>"; return;
    case json::value_t::discarded: out += "<discarded>"; return;
    default: out += v.dump();  // a number, a boolean or null: short, and not recursive
  }
}

}  // namespace

std::string excerpt(const json& value, size_t max) {
  std::string out;
  render(value, out, max, 0);
  return out;
}

}  // namespace xntk::detail
