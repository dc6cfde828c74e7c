// fedcl-server's metrics: one JSON object per closed round, appended to
// <state_dir>/metrics.jsonl. The line is valid JSON whatever the report holds: a number that is
// not finite (a loss that overflowed, say) is written as null, and every string is escaped, with
// bytes that are not UTF-8 replaced by U+FFFD. Readers find fields by name (sim/server_report.cc).
//
//   {"round":3,"opened_ms":...,"closed_ms":...,"participants":8,"enrolled":10,"samples":512,
//    "mean_loss":0.412345,"weight_min":1.000000,"weight_mean":1.250000,"weight_max":2.000000,
//    "modules":{"head":4},"pool":{"block1/m1":{"block":1,"version":3,"contributors":2,
//    "holders":4}},"pool_merges":0,"accuracy":0.8123}
#ifndef FEDCL_SERVER_METRICS_LINE_H_
#define FEDCL_SERVER_METRICS_LINE_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "core/fl/coordinator.h"

namespace fedcl::server {

// The line for `report` (no trailing newline); `accuracy` null if the round was not evaluated.
std::string MetricsLine(const fl::RoundReport& report, std::optional<double> accuracy);

// A JSON number with `decimals` digits after the point (exponent form from 1e15 on); null if
// `value` is not finite.
std::string JsonNumber(double value, int decimals = 6);
// A JSON string literal for `text`.
std::string JsonString(absl::string_view text);

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_METRICS_LINE_H_
