#include "server/metrics_line.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace fedcl::server {
namespace {

// Length of the well-formed UTF-8 character at the start of `s` (shortest form, no surrogates,
// at most U+10FFFF), or 0 if it is not one.
size_t Utf8Length(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b = byte(0);
  size_t n;
  uint32_t code;
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) {
    n = 2, code = b & 0x1F;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3, code = b & 0x0F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4, code = b & 0x07;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i) & 0x3F);
  }
  const bool overlong = (n == 3 && code < 0x800) || (n == 4 && code < 0x10000);
  if (overlong || (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return 0;
  return n;
}

}  // namespace

std::string JsonNumber(double value, int decimals) {
  if (!std::isfinite(value)) return "null";
  if (std::abs(value) >= 1e15) return absl::StrFormat("%.*e", decimals, value);
  return absl::StrFormat("%.*f", decimals, value);
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  while (!text.empty()) {
    const unsigned char c = static_cast<unsigned char>(text[0]);
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", text.substr(0, 1));
    } else if (c < 0x20 || c == 0x7F) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else if (const size_t n = Utf8Length(text); n > 0) {
      absl::StrAppend(&out, text.substr(0, n));
      text.remove_prefix(n - 1);
    } else {
      absl::StrAppend(&out, "\\ufffd");  // not UTF-8: the replacement character
    }
    text.remove_prefix(1);
  }
  return out + "\"";
}

std::string MetricsLine(const fl::RoundReport& r, std::optional<double> accuracy) {
  std::vector<std::string> modules;
  for (const fl::ModuleVersion& m : r.modules) {
    modules.push_back(absl::StrCat(JsonString(m.name), ":", m.version));
  }
  // Pool keys differ from the top-level ones: readers find fields by name (sim/server_report.cc).
  std::vector<std::string> pool;
  for (const fl::PoolModuleStatus& m : r.pool) {
    pool.push_back(
        absl::StrFormat("%s:{\"block\":%d,\"version\":%d,\"contributors\":%d,\"holders\":%d}",
                        JsonString(m.name), m.block, m.version, m.contributors, m.holders));
  }
  return absl::StrFormat(
      "{\"round\":%d,\"opened_ms\":%d,\"closed_ms\":%d,\"participants\":%d,\"enrolled\":%d,"
      "\"samples\":%d,\"mean_loss\":%s,\"weight_min\":%s,\"weight_mean\":%s,\"weight_max\":%s,"
      "\"modules\":{%s},\"pool\":{%s},\"pool_merges\":%d,\"accuracy\":%s,"
      "\"staleness_mean\":%s,\"staleness_max\":%d}",
      r.round, absl::ToUnixMillis(r.opened), absl::ToUnixMillis(r.closed), r.participants,
      r.enrolled, r.samples, JsonNumber(r.mean_loss), JsonNumber(r.weight_min),
      JsonNumber(r.weight_mean), JsonNumber(r.weight_max), absl::StrJoin(modules, ","),
      absl::StrJoin(pool, ","), r.pool_merges,
      accuracy.has_value() ? JsonNumber(*accuracy, 4) : "null", JsonNumber(r.staleness_mean),
      r.staleness_max);
}

}  // namespace fedcl::server
