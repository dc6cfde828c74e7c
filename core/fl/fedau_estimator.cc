#include "core/fl/fedau_estimator.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {
namespace {

// The gap g before a participation in `round` splits into `cutoff_intervals` intervals of length
// K, recorded before the weight is read, and one final interval (g mod K) + 1 recorded after.
struct Gap {
  int64_t cutoff_intervals = 0;
  int64_t final_interval = 1;
};

Gap SplitGap(const FedAuClientState& state, int64_t round, int64_t cutoff) {
  const int64_t gap = round > state.last_round ? round - state.last_round - 1 : 0;
  if (cutoff == kFedAuNoCutoff) return {0, gap + 1};
  return {gap / cutoff, gap % cutoff + 1};
}

double WeightBeforeFinalInterval(const FedAuClientState& state, const Gap& gap, int64_t cutoff) {
  const int64_t count = state.intervals + gap.cutoff_intervals;
  if (count == 0) return 1.0;
  const int64_t sum = state.interval_sum + gap.cutoff_intervals * cutoff;
  return static_cast<double>(sum) / static_cast<double>(count);
}

}  // namespace

FedAuClientState FedAuEnrol(int64_t enrol_round) {
  return FedAuClientState{.last_round = enrol_round - 1, .intervals = 0, .interval_sum = 0};
}

absl::Status ValidateFedAuClientState(const FedAuClientState& state) {
  if (state.last_round < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("FedAU state: last_round must be >= -1, got ", state.last_round));
  }
  if (state.intervals < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("FedAU state: intervals must be >= 0, got ", state.intervals));
  }
  if (state.interval_sum < state.intervals) {
    return absl::InvalidArgumentError(absl::StrCat("FedAU state: interval_sum (",
                                                   state.interval_sum, ") is less than intervals (",
                                                   state.intervals, "); each interval is >= 1"));
  }
  if (state.intervals == 0 && state.interval_sum != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FedAU state: interval_sum is ", state.interval_sum, " with no interval recorded"));
  }
  return absl::OkStatus();
}

double FedAuWeightAt(const FedAuClientState& state, int64_t round, int64_t cutoff) {
  FEDCL_CHECK(cutoff >= 0) << "FedAU cutoff must be >= 0 (validated options), got " << cutoff;
  return WeightBeforeFinalInterval(state, SplitGap(state, round, cutoff), cutoff);
}

absl::StatusOr<double> FedAuParticipate(FedAuClientState& state, int64_t round, int64_t cutoff,
                                        std::vector<int64_t>* recorded) {
  if (cutoff < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("FedAU cutoff must be >= 0 (0 = none), got ", cutoff));
  }
  if (round <= state.last_round) {
    return absl::InvalidArgumentError(absl::StrCat("FedAU participation in round ", round,
                                                   " is not after the last recorded one (round ",
                                                   state.last_round, ")"));
  }
  const Gap gap = SplitGap(state, round, cutoff);
  const double weight = WeightBeforeFinalInterval(state, gap, cutoff);
  if (recorded != nullptr) {
    recorded->insert(recorded->end(), gap.cutoff_intervals, cutoff);
    recorded->push_back(gap.final_interval);
  }
  state.intervals += gap.cutoff_intervals + 1;
  state.interval_sum += gap.cutoff_intervals * cutoff + gap.final_interval;
  state.last_round = round;
  return weight;
}

}  // namespace fedcl::fl
