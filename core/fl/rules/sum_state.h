// The state of the rules that apply a weighted sum of the round's deltas and keep nothing across
// rounds (FedAU, known_prob, average_all, average_participating, sum):
//   params += γ / D · Σ_{S_t} w_n·Δ_n,   D = N (kEnrolled), |S_t| (kParticipants) or 1 (kOne),
// and no change when nothing was folded. One int64 per parameter (8·d bytes), whatever N is.
#ifndef FEDCL_CORE_FL_RULES_SUM_STATE_H_
#define FEDCL_CORE_FL_RULES_SUM_STATE_H_

#include <string>

#include "core/fl/aggregation_rule.h"
#include "core/fl/fixed_point_accumulator.h"

namespace fedcl::fl {

class SumState final : public ModuleRuleState {
 public:
  enum class Divisor { kEnrolled, kParticipants, kOne };
  SumState(int64_t size, tbb::task_arena* arena, double gamma, Divisor divisor,
           absl::string_view rule)
      : sum_(size, arena), gamma_(gamma), divisor_(divisor), rule_(rule) {}

  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight) override;
  absl::Status CheckFinish(const RoundTotals& totals) const override;
  absl::Status Finish(const RoundTotals& totals, absl::Span<float> params) override;
  int64_t memory_bytes() const override;

 private:
  FixedPointAccumulator sum_;
  const double gamma_;
  const Divisor divisor_;
  const std::string rule_;
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_RULES_SUM_STATE_H_
