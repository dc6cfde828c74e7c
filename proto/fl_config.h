// Configuration messages → core/fl options, with their defaults, in one place: fedcl-server's
// config (server_config.proto) and fedcl-sim's scenarios (scenario.proto) share these messages
// and map them here, so the two cannot drift apart.
#ifndef FEDCL_PROTO_FL_CONFIG_H_
#define FEDCL_PROTO_FL_CONFIG_H_

#include "absl/status/statusor.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/round_policy.h"
#include "proto/fedcl/v1/server_config.pb.h"

namespace fedcl::proto {

// The rule an AggregatorConfig names, with the defaults of an empty message (FedAU, γ = 1,
// K = ∞). InvalidArgument (from the rule registry) for an unknown rule, a bad γ or cutoff, or
// options the rule refuses.
absl::StatusOr<fl::RuleConfig> RuleConfigFromProto(const v1::AggregatorConfig& config);

// The round policy a RoundConfig describes: "barrier" with `shards` reporters when shards > 0,
// else "deadline_quota" (duration default 30 s, min_participants default 1). InvalidArgument
// naming the field otherwise.
absl::StatusOr<fl::RoundPolicyConfig> RoundPolicyConfigFromProto(const v1::RoundConfig& config);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_FL_CONFIG_H_
