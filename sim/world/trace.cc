#include "sim/world/trace.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fedcl::sim {
namespace {

constexpr uint32_t kMaxClientId = 1u << 31;

absl::Status LineError(int line, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", message));
}

// Calls `row(line_number, fields)` for each data line after the header, which must be one of
// `headers` (its index goes to *header_index).
template <typename RowFn>
absl::Status ForEachRow(absl::string_view csv, const std::vector<absl::string_view>& headers,
                        int* header_index, RowFn row) {
  int line_number = 0;
  bool have_header = false;
  for (absl::string_view line : absl::StrSplit(csv, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    for (absl::string_view& field : fields) field = absl::StripAsciiWhitespace(field);
    if (!have_header) {
      std::string joined = absl::StrJoin(fields, ",");
      auto it = std::find(headers.begin(), headers.end(), joined);
      if (it == headers.end()) {
        return LineError(
            line_number,
            absl::StrCat("header '", joined, "' is not one of: ", absl::StrJoin(headers, " | ")));
      }
      *header_index = static_cast<int>(it - headers.begin());
      have_header = true;
      continue;
    }
    if (fields.size() != 3) {
      return LineError(line_number, absl::StrCat("expected 3 fields, found ", fields.size()));
    }
    uint32_t client = 0;
    double a = 0, b = 0;
    if (!absl::SimpleAtoi(fields[0], &client) || client >= kMaxClientId) {
      return LineError(line_number,
                       absl::StrCat("client id '", fields[0], "' is not an integer in [0, 2^31)"));
    }
    if (!absl::SimpleAtod(fields[1], &a) || !std::isfinite(a) || !absl::SimpleAtod(fields[2], &b) ||
        !std::isfinite(b)) {
      return LineError(line_number, "fields 2 and 3 must be finite numbers");
    }
    if (absl::Status status = row(line_number, client, a, b); !status.ok()) return status;
  }
  if (!have_header) return absl::InvalidArgumentError("no header line");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AvailabilityTrace> AvailabilityTrace::Parse(absl::string_view csv) {
  AvailabilityTrace trace;
  int header = 0;
  absl::Status status = ForEachRow(
      csv, {"client,from_round,until_round", "client,from_s,until_s"}, &header,
      [&](int line, uint32_t client, double from, double until) -> absl::Status {
        if (from < 0 || until <= from) {
          return LineError(
              line, absl::StrCat("window [", from, ", ", until, ") must have 0 <= from < until"));
        }
        trace.windows_[client].push_back({from, until});
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  trace.unit_ = header == 0 ? TraceUnit::kRounds : TraceUnit::kSeconds;
  for (auto& [client, windows] : trace.windows_) {
    std::sort(windows.begin(), windows.end(),
              [](const Window& x, const Window& y) { return x.from < y.from; });
    std::vector<Window> merged;
    for (const Window& w : windows) {
      if (!merged.empty() && w.from <= merged.back().until) {
        merged.back().until = std::max(merged.back().until, w.until);
      } else {
        merged.push_back(w);
      }
    }
    windows = std::move(merged);
    windows.shrink_to_fit();
  }
  return trace;
}

const AvailabilityTrace::Window* AvailabilityTrace::WindowAt(uint32_t client, double time) const {
  auto found = windows_.find(client);
  if (found == windows_.end()) return nullptr;
  const std::vector<Window>& windows = found->second;
  // First window starting after `time`; the one before it may contain `time`.
  auto it = std::upper_bound(windows.begin(), windows.end(), time,
                             [](double t, const Window& w) { return t < w.from; });
  if (it == windows.begin()) return nullptr;
  --it;
  return time < it->until ? &*it : nullptr;
}

int64_t AvailabilityTrace::num_windows() const {
  int64_t total = 0;
  for (const auto& [client, windows] : windows_) total += static_cast<int64_t>(windows.size());
  return total;
}

double DeviceProfile::RoundSeconds(int64_t samples, int64_t download_bytes,
                                   int64_t upload_bytes) const {
  double seconds = static_cast<double>(samples) * ms_per_sample / 1000.0;
  if (bandwidth_kbps > 0) {
    seconds += static_cast<double>(download_bytes + upload_bytes) * 8.0 / (bandwidth_kbps * 1000.0);
  }
  return seconds;
}

absl::StatusOr<DeviceProfiles> DeviceProfiles::Parse(absl::string_view csv,
                                                     const DeviceProfile& fallback) {
  DeviceProfiles profiles(fallback);
  int header = 0;
  absl::Status status = ForEachRow(
      csv, {"client,ms_per_sample,bandwidth_kbps"}, &header,
      [&](int line, uint32_t client, double ms, double kbps) -> absl::Status {
        if (ms < 0 || kbps < 0) {
          return LineError(line, "ms_per_sample and bandwidth_kbps must be >= 0");
        }
        if (!profiles.profiles_.emplace(client, DeviceProfile{ms, kbps}).second) {
          return LineError(line, absl::StrCat("client ", client, " has a second profile"));
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  return profiles;
}

const DeviceProfile& DeviceProfiles::For(uint32_t client) const {
  auto it = profiles_.find(client);
  return it == profiles_.end() ? fallback_ : it->second;
}

}  // namespace fedcl::sim
