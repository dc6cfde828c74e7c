// FedAU ("adaptive", algorithms.md §1.3–1.4): x += γ·(1/N)·Σ_{S_t} ω_n·Δ_n, with ω_n the client's
// online estimate of its mean participation interval (fedau_estimator.h), read for the round the
// update is for. The coordinator keeps each client's estimator state in its ClientRecord and
// records the participation at the close.
#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/sum_state.h"

namespace fedcl::fl {
namespace {

class FedAuRule final : public AggregationRule {
 public:
  explicit FedAuRule(const RuleConfig& config)
      : gamma_(config.global_learning_rate), cutoff_(config.fedau_cutoff) {}
  absl::string_view name() const override { return "adaptive"; }
  bool weighted() const override { return true; }
  bool estimates_inverse_participation() const override { return true; }
  double ClientWeight(const ClientRecord& client, int64_t round) const override {
    return FedAuWeightAt(client.fedau, round, cutoff_);
  }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<SumState>(size, arena, gamma_, SumState::Divisor::kEnrolled, name());
  }

 private:
  const double gamma_;
  const int64_t cutoff_;
};

}  // namespace

void RegisterFedAuRule(RuleRegistry& registry) {
  RegisterRuleWithoutOptions<FedAuRule>(
      registry, "adaptive", "FedAU: x += γ/N·Σ ω_n·Δ_n with online participation-interval weights");
}

}  // namespace fedcl::fl
