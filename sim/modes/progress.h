// What fedcl-sim's modes share: progress on stderr, times as a clock, the pattern and token the
// command line names.
#ifndef FEDCL_SIM_MODES_PROGRESS_H_
#define FEDCL_SIM_MODES_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/base/filesystem.h"
#include "sim/run/results.h"
#include "sim/world/participation.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// "m:ss", or "h:mm:ss" from an hour, rounded to the second.
std::string ClockText(double seconds);
// Seconds on the steady clock since `start`.
double SecondsSince(std::chrono::steady_clock::time_point start);

// The scenario's pattern named `name`, the first if `name` is empty. InvalidArgument naming it if
// the scenario has no such pattern.
absl::StatusOr<PatternSpec> SelectPattern(const Scenario& scenario, const std::string& name);
// The bearer token in the file at `path` (surrounding whitespace removed), empty without a path.
// The file system's status if it cannot be read.
absl::StatusOr<std::string> ReadToken(const base::FileSystem& fs, const std::string& path);

// Progress on stderr: one line rewritten in place on a terminal (at most 5 times a second),
// otherwise a plain line every 10 seconds and at the end of each run. Disabled, it prints
// nothing. Called from the thread that runs the engine.
class Progress final : public RunObserver {
 public:
  // `total_rounds`: over every run, for the estimated time left.
  Progress(bool enabled, int64_t total_rounds);

  void StartRun(const std::string& label) { label_ = label; }
  void OnRound(int64_t round, int64_t participants) override;
  void OnEval(const EvalPoint& point) override { accuracy_ = point.accuracy; }
  void EndRun();

 private:
  void Print(bool force);

  const bool enabled_;
  const bool interactive_;
  const int64_t total_;
  int64_t done_ = 0;
  int64_t round_ = 0;
  int64_t participants_ = 0;
  double accuracy_ = -1.0;
  std::string label_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_print_{};
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_MODES_PROGRESS_H_
