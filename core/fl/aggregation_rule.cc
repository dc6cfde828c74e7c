#include "core/fl/aggregation_rule.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {

absl::Status ModuleRuleState::ImportMemory(const ClientVectors& memory) {
  if (memory.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("this rule keeps no memory across rounds, got ", memory.size(), " vectors"));
}

absl::Status AggregationRule::CheckWeight(double weight) const {
  if (weighted()) {
    if (!std::isfinite(weight) || !(weight > 0.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name(), ": fold weight must be finite and > 0, got ", weight));
    }
  } else if (weight != 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": fold weight must be 1, got ", weight));
  }
  return absl::OkStatus();
}

void RuleRegistry::Register(absl::string_view name, absl::string_view summary,
                            RuleFactory factory) {
  const bool inserted =
      rules_.try_emplace(std::string(name), std::string(summary), std::move(factory)).second;
  FEDCL_CHECK(inserted) << "aggregation rule '" << name << "' registered twice";
}

const RuleFactory* RuleRegistry::Find(absl::string_view name) const {
  auto it = rules_.find(name);
  return it == rules_.end() ? nullptr : &it->second.second;
}

std::vector<std::string> RuleRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : rules_) names.push_back(name);
  return names;  // std::map: sorted
}

std::string RuleRegistry::Summary(absl::string_view name) const {
  auto it = rules_.find(name);
  return it == rules_.end() ? std::string() : it->second.first;
}

const RuleRegistry& AggregationRules() {
  static const RuleRegistry* const registry = [] {
    auto* r = new RuleRegistry;
    RegisterBuiltinRules(*r);
    return r;
  }();
  return *registry;
}

absl::Status RefuseRuleOptions(const RuleConfig& config) {
  if (config.options.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("rule ", config.name, " takes no options, got '", config.options, "'"));
}

std::vector<std::string> RegisteredRuleNames() { return AggregationRules().Names(); }

absl::StatusOr<std::shared_ptr<const AggregationRule>> CreateAggregationRule(
    const RuleConfig& config) {
  const RuleFactory* factory = AggregationRules().Find(config.name);
  if (factory == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown aggregation rule '", config.name,
                     "'; registered: ", absl::StrJoin(RegisteredRuleNames(), ", ")));
  }
  if (!std::isfinite(config.global_learning_rate) || !(config.global_learning_rate > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregator: global_learning_rate must be finite and > 0, got ",
                     config.global_learning_rate));
  }
  if (config.fedau_cutoff < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregator: fedau_cutoff must be >= 0 (0 = none), got ", config.fedau_cutoff));
  }
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<AggregationRule> rule, (*factory)(config));
  return std::shared_ptr<const AggregationRule>(std::move(rule));
}

}  // namespace fedcl::fl
