// average_participating (algorithms.md §1.7): x += γ·(1/|S_t|)·Σ_{S_t} Δ_n; no change when no
// client took part.
#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/sum_state.h"

namespace fedcl::fl {
namespace {

class AverageParticipatingRule final : public AggregationRule {
 public:
  explicit AverageParticipatingRule(const RuleConfig& config)
      : gamma_(config.global_learning_rate) {}
  absl::string_view name() const override { return "average_participating"; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<SumState>(size, arena, gamma_, SumState::Divisor::kParticipants,
                                      name());
  }

 private:
  const double gamma_;
};

}  // namespace

void RegisterAverageParticipatingRule(RuleRegistry& registry) {
  RegisterRuleWithoutOptions<AverageParticipatingRule>(
      registry, "average_participating", "the mean of the participants' deltas: x += γ/|S|·Σ Δ_n");
}

}  // namespace fedcl::fl
