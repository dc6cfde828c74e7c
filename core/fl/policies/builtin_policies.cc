// Every round policy fedcl ships. A new policy adds its registration function here.
#include "core/fl/round_policy.h"

namespace fedcl::fl {

void RegisterDeadlineQuotaPolicy(RoundPolicyRegistry& registry);
void RegisterBarrierPolicy(RoundPolicyRegistry& registry);
void RegisterFedBuffPolicy(RoundPolicyRegistry& registry);

void RegisterBuiltinPolicies(RoundPolicyRegistry& registry) {
  RegisterDeadlineQuotaPolicy(registry);
  RegisterBarrierPolicy(registry);
  RegisterFedBuffPolicy(registry);
}

}  // namespace fedcl::fl
