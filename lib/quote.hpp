#pragma once
// Input quoted in error messages: at most a short, printable prefix of any value that came from a file or
// the command line, so that a 1 MB tensor name or a binary file given as a model still gives one short line.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <string>
#include <string_view>

namespace xntk::detail {

/// Bytes of a value that a message quotes at most.
inline constexpr size_t kQuoteBytes = 48;

/// `"text"` with `"` and `\` escaped and bytes outside printable ASCII written as \xNN; a value longer than
/// `max` bytes is cut: `"first max bytes..." (N bytes)`. `mark` is the quotation mark (`'` for Python literals).
inline std::string quote(std::string_view s, size_t max = kQuoteBytes, char mark = '"') {
  static constexpr char hex[] = "0123456789abcdef";
  std::string r(1, mark);
  const size_t n = std::min(s.size(), max);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == static_cast<unsigned char>(mark) || c == '\\') {
      r += '\\';
      r += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      r += static_cast<char>(c);
    } else {
      r += "\\x";
      r += hex[c >> 4];
      r += hex[c & 15];
    }
  }
  if (s.size() > max) return r + "..." + mark + " (" + std::to_string(s.size()) + " bytes)";
  return r + mark;
}

/// A number as a message shows it: the shortest text that reads back as the same double ("2", "0.5",
/// "1e+300", "-1e-12", "nan", "inf"), never std::to_string's fixed notation (300 digits for 1e300, "0.000000"
/// for 1e-12).
inline std::string number(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

/// A message from a library (which may embed what it read) made printable and cut to `max` bytes.
inline std::string shorten(std::string_view text, size_t max = 200) {
  std::string r(text.substr(0, std::min(text.size(), max)));
  for (char& c : r)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  if (text.size() > max) r += "...";
  return r;
}

}  // namespace xntk::detail
