// Every aggregation rule fedcl ships, registered into the process's registry at first use. A new
// rule adds its registration function here (one declaration, one call).
#include "core/fl/aggregation_rule.h"

namespace fedcl::fl {

void RegisterFedAuRule(RuleRegistry& registry);
void RegisterKnownProbRule(RuleRegistry& registry);
void RegisterAverageParticipatingRule(RuleRegistry& registry);
void RegisterAverageAllRule(RuleRegistry& registry);
void RegisterFedVarpRule(RuleRegistry& registry);
void RegisterMifaRule(RuleRegistry& registry);
void RegisterFedAweRule(RuleRegistry& registry);
void RegisterFedAdamRule(RuleRegistry& registry);
void RegisterSumRule(RuleRegistry& registry);

void RegisterBuiltinRules(RuleRegistry& registry) {
  RegisterFedAuRule(registry);
  RegisterKnownProbRule(registry);
  RegisterAverageParticipatingRule(registry);
  RegisterAverageAllRule(registry);
  RegisterFedVarpRule(registry);
  RegisterMifaRule(registry);
  RegisterFedAweRule(registry);
  RegisterFedAdamRule(registry);
  RegisterSumRule(registry);
}

}  // namespace fedcl::fl
