// average_all (algorithms.md §1.7): x += γ·(1/N)·Σ_{S_t} Δ_n, absent clients counting as zero
// deltas.
#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/sum_state.h"

namespace fedcl::fl {
namespace {

class AverageAllRule final : public AggregationRule {
 public:
  explicit AverageAllRule(const RuleConfig& config) : gamma_(config.global_learning_rate) {}
  absl::string_view name() const override { return "average_all"; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<SumState>(size, arena, gamma_, SumState::Divisor::kEnrolled, name());
  }

 private:
  const double gamma_;
};

}  // namespace

void RegisterAverageAllRule(RuleRegistry& registry) {
  RegisterRuleWithoutOptions<AverageAllRule>(registry, "average_all",
                                             "absent clients count as zero deltas: x += γ/N·Σ Δ_n");
}

}  // namespace fedcl::fl
