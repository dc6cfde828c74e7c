// FedAU's online estimate of one client's aggregation weight (algorithms.md §1.3, the contract).
//
// The weight of client n is the mean length of its participation intervals: a client seen every
// third round gets ω ≈ 3, which makes Σ_{n∈S_t} ω_n·Δ_n an unbiased stand-in for Σ_n Δ_n when
// its participation probability is unknown. This is the lazy O(1) form of §1.3 item 6: the state
// is the last participation round, the number of intervals recorded and their total length, and
// a participation after a gap of g rounds records, in this order,
//   floor(g / K) intervals of length K (cutoff K only), then READS the weight, then records
//   (g mod K) + 1   (g + 1 when K = ∞).
// The weight is therefore read before the interval that ends now is recorded, ω = 1 while no
// interval has been recorded, and cutoff intervals recorded during a gap count in the weight used
// when the client comes back. Test vectors of §1.3 (rounds 0..9, participation
// 0,0,1,0,1,1,0,0,0,1):
//   K = ∞: weights 1, 3, 2.5, 2;        intervals 3, 2, 1, 4
//   K = 2: weights 2, 1.5, 1.6667, 1.6;  intervals 2, 1, 2, 1, 2, 2
//
// Live-server pinning (what a single-process simulation never has to decide):
//   - participation in round t means "an update of this client was accepted in round t";
//   - a client that enrols at round r starts its interval counter at r: its "last participation"
//     is r − 1, so a first participation at round r records an interval of 1 (the reference code
//     has every client present from round 0, which is FedAuEnrol(0));
//   - the weight depends only on the state and t, never on whether the client takes part in t.
//     A server reads it with FedAuWeightAt when the update arrives, folds, and records the
//     participation with FedAuParticipate once the update is accepted (at the latest when the
//     round closes). FedAuParticipate returns the same weight FedAuWeightAt gave.
//
// The interval lengths are integers, so keeping their sum (not a running mean) gives the mean as
// one correctly rounded division: exactly numpy's np.mean over the reference code's list.
//
//   fl::FedAuClientState s = fl::FedAuEnrol(/*enrol_round=*/0);
//   double w = fl::FedAuWeightAt(s, /*round=*/2, fl::kFedAuNoCutoff);      // 1: nothing recorded
//   FEDCL_ASSIGN_OR_RETURN(double used, fl::FedAuParticipate(s, 2, fl::kFedAuNoCutoff));  // 1
//   // s.intervals == 1, s.interval_sum == 3
//
// Plain value type and free functions: no locking; callers serialise access to one state.
#ifndef FEDCL_CORE_FL_FEDAU_ESTIMATOR_H_
#define FEDCL_CORE_FL_FEDAU_ESTIMATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedcl::fl {

// The cutoff K that disables cutoff intervals (K = ∞, the reference code's default). Any cutoff
// argument below is >= 0; 0 means ∞.
inline constexpr int64_t kFedAuNoCutoff = 0;

// One client's estimator state. Persist all three fields.
struct FedAuClientState {
  // Round of the last recorded participation; enrol_round − 1 before the first one.
  int64_t last_round = -1;
  // M: intervals recorded so far. Cutoff intervals of the gap since last_round are recorded
  // lazily, at the next participation (FedAuWeightAt accounts for them).
  int64_t intervals = 0;
  // Total length of the recorded intervals, in rounds (each interval is >= 1).
  int64_t interval_sum = 0;

  // interval_sum / intervals, or 0 when nothing has been recorded (the weight is then 1).
  double mean_interval() const {
    return intervals > 0 ? static_cast<double>(interval_sum) / static_cast<double>(intervals) : 0.0;
  }

  friend bool operator==(const FedAuClientState&, const FedAuClientState&) = default;
};

// The state of a client enrolled at `enrol_round` (>= 0; 0 for the reference code's "present
// from the start").
FedAuClientState FedAuEnrol(int64_t enrol_round);

// OK if `state` could have been produced by FedAuEnrol and FedAuParticipate (e.g. after loading
// it from storage): last_round >= -1, intervals >= 0, interval_sum >= intervals, and
// interval_sum == 0 when intervals == 0. InvalidArgument naming the field otherwise.
absl::Status ValidateFedAuClientState(const FedAuClientState& state);

// The weight a participation in `round` would use, without changing the state: includes the
// cutoff intervals of the gap before `round`; 1 if no interval would be recorded before it.
// For round <= state.last_round (no participation possible) the gap is taken as empty, i.e. the
// weight of the recorded intervals alone. `cutoff` >= 0 (kFedAuNoCutoff = ∞; checked).
double FedAuWeightAt(const FedAuClientState& state, int64_t round, int64_t cutoff);

// Records a participation in `round` and returns the weight it uses (what FedAuWeightAt(state,
// round, cutoff) returned just before). If `recorded` is not null, the intervals recorded by this
// call are appended to it in order (cutoff intervals first); meant for tests, since a long gap with
// a small cutoff appends gap / cutoff entries.
// Errors, state unchanged: InvalidArgument if round <= state.last_round (participations come in
// strictly increasing rounds, at most one per round) or cutoff < 0.
absl::StatusOr<double> FedAuParticipate(FedAuClientState& state, int64_t round, int64_t cutoff,
                                        std::vector<int64_t>* recorded = nullptr);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_FEDAU_ESTIMATOR_H_
