#pragma once
// JSON from files (the model JSON, safetensors headers): parsed with a bounded nesting depth and no
// duplicate keys, every library exception turned into one xntk::Error naming the file, and values quoted
// in messages by a short excerpt, never by dump() (recursive, and as long as the value).

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace xntk::detail {

/// Arrays and objects nested deeper than this are refused (the formats need 3 levels).
inline constexpr int kMaxJsonDepth = 64;

/// Parses `text`; xntk::Error "`where`: not valid JSON: …" on a syntax error or a number out of double's range,
/// "`where`: … nested deeper than 64 levels" or "`where`: duplicate key …" otherwise.
nlohmann::json parse_json(std::string_view text, const std::string& where);

/// A short, printable rendering of a value for messages: numbers, booleans and null as JSON, strings quoted
/// and cut as quote(), arrays and objects up to about `max` characters, then "...".
std::string excerpt(const nlohmann::json& value, size_t max = 60);

}  // namespace xntk::detail
