// known_prob (algorithms.md §1.7): FedAvg weighted by the true participation probabilities,
// x += γ·(1/N)·Σ_{S_t} Δ_n/p_n. An oracle baseline: p_n must be configured for every client
// (RuleConfig::participation_probability); a client without one cannot take part (weight 0).
#include <map>

#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/sum_state.h"

namespace fedcl::fl {
namespace {

class KnownProbRule final : public AggregationRule {
 public:
  explicit KnownProbRule(const RuleConfig& config)
      : gamma_(config.global_learning_rate), probability_(config.participation_probability) {}
  absl::string_view name() const override { return "known_prob"; }
  bool weighted() const override { return true; }
  bool needs_participation_probability() const override { return true; }
  double ClientWeight(const ClientRecord& client, int64_t round) const override {
    if (probability_ == nullptr) return 0.0;
    auto it = probability_->find(client.id);
    return it == probability_->end() ? 0.0 : 1.0 / it->second;
  }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<SumState>(size, arena, gamma_, SumState::Divisor::kEnrolled, name());
  }

 private:
  const double gamma_;
  const std::map<ClientId, double>* const probability_;
};

}  // namespace

void RegisterKnownProbRule(RuleRegistry& registry) {
  RegisterRuleWithoutOptions<KnownProbRule>(
      registry, "known_prob", "FedAvg weighted by the known 1/p_n: x += γ/N·Σ Δ_n/p_n");
}

}  // namespace fedcl::fl
