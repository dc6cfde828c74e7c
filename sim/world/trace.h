// Recorded device behaviour for the simulator: availability windows and device profiles, parsed
// from plain CSV text (the caller reads the file). tools/fedscale_to_trace.py converts FedScale's
// pickled traces into these formats.
//
// Availability trace. Lines starting with '#' and blank lines are ignored; the first other line
// is a header naming the unit, then one window per line, half-open [from, until):
//
//   client,from_round,until_round        or        client,from_s,until_s
//   0,0,120                                         0,0,3600.5
//   0,300,450                                       17,86400,90000
//
// With rounds, client n is available in round t iff a window of its contains t. With seconds, it
// is available when the round starts inside a window, and it drops out mid-round if the window
// ends before its work is done (the simulator compares the window's end with its virtual finish
// time). Clients may have any number of windows, in any order; overlapping windows merge.
//
// Device profiles, for stragglers on the virtual clock (units as FedScale's capacity trace):
//
//   client,ms_per_sample,bandwidth_kbps
//   0,35.2,12000
//
// A participant's round takes download + training + upload:
//   bits / (bandwidth_kbps · 1000) + local_steps · batch_size · ms_per_sample / 1000  seconds.
//
// Errors: InvalidArgument naming the line and what is wrong (bad header, a field that is not a
// number, a negative or reversed window, a duplicate profile, a client id above 2^31).
#ifndef FEDCL_SIM_WORLD_TRACE_H_
#define FEDCL_SIM_WORLD_TRACE_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedcl::sim {

enum class TraceUnit { kRounds, kSeconds };

class AvailabilityTrace {
 public:
  struct Window {
    double from = 0;
    double until = 0;
  };

  static absl::StatusOr<AvailabilityTrace> Parse(absl::string_view csv);

  TraceUnit unit() const { return unit_; }
  // The window containing `time` (a round index or seconds), or null if the client is away.
  const Window* WindowAt(uint32_t client, double time) const;
  // Clients with at least one window.
  uint32_t num_clients() const { return static_cast<uint32_t>(windows_.size()); }
  int64_t num_windows() const;

 private:
  TraceUnit unit_ = TraceUnit::kRounds;
  // Per client with windows, sorted and merged (a hash map: ids in the trace may be sparse).
  absl::flat_hash_map<uint32_t, std::vector<Window>> windows_;
};

struct DeviceProfile {
  double ms_per_sample = 0.0;
  double bandwidth_kbps = 0.0;  // 0 = infinite
  // Seconds for one round's download, training and upload.
  double RoundSeconds(int64_t samples, int64_t download_bytes, int64_t upload_bytes) const;
};

class DeviceProfiles {
 public:
  static absl::StatusOr<DeviceProfiles> Parse(absl::string_view csv, const DeviceProfile& fallback);
  explicit DeviceProfiles(const DeviceProfile& fallback) : fallback_(fallback) {}
  const DeviceProfile& For(uint32_t client) const;
  int64_t size() const { return static_cast<int64_t>(profiles_.size()); }

 private:
  DeviceProfile fallback_;
  absl::flat_hash_map<uint32_t, DeviceProfile> profiles_;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_WORLD_TRACE_H_
