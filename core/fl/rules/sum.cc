// sum: x += Σ_{S_t} Δ_n, the exact sum of the round's deltas, unweighted and undivided. Not a
// rule for models: it is how statistics that devices add to (federated SimpleCIL's class sums and
// counts, peft::ModuleRole::kClassStatistics) become the sum over every device, each device's
// contribution counted once. The coordinator folds class-statistics modules with it whatever the
// server's aggregator; a server may also name it as its aggregator. γ must be 1.
#include "absl/strings/str_cat.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/sum_state.h"

namespace fedcl::fl {
namespace {

class SumRule final : public AggregationRule {
 public:
  absl::string_view name() const override { return "sum"; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<SumState>(size, arena, 1.0, SumState::Divisor::kOne, name());
  }
};

}  // namespace

void RegisterSumRule(RuleRegistry& registry) {
  registry.Register(
      "sum", "the exact sum of the deltas, for statistics: x += Σ Δ_n (γ must be 1)",
      [](const RuleConfig& config) -> absl::StatusOr<std::unique_ptr<AggregationRule>> {
        if (absl::Status refused = RefuseRuleOptions(config); !refused.ok()) return refused;
        if (config.global_learning_rate != 1.0) {
          return absl::InvalidArgumentError(
              absl::StrCat("the sum rule adds statistics exactly: global_learning_rate must be 1, "
                           "not ",
                           config.global_learning_rate));
        }
        return std::make_unique<SumRule>();
      });
}

}  // namespace fedcl::fl
