// Configuration messages → core/fl options, with their defaults, in one place: fedcl-server's
// config (server_config.proto) and fedcl-sim's scenarios (scenario.proto) share these messages
// and map them here, so the two cannot drift apart and neither host includes the other.
#ifndef FEDCL_PROTO_FL_CONFIG_H_
#define FEDCL_PROTO_FL_CONFIG_H_

#include "absl/status/statusor.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/module_registry.h"
#include "core/fl/round_policy.h"
#include "core/fl/round_types.h"
#include "proto/fedcl/v1/server_config.pb.h"

namespace fedcl::proto {

// The rule an AggregatorConfig names, with the defaults of an empty message (FedAU, γ = 1,
// K = ∞). InvalidArgument (from the rule registry) for an unknown rule, a bad γ or cutoff, or
// options the rule refuses.
absl::StatusOr<fl::RuleConfig> RuleConfigFromProto(const v1::AggregatorConfig& config);
// The inverse: the message RuleConfigFromProto maps back to `rule` (participation probabilities
// are not part of it: ServerConfig.participation_probability carries them).
void RuleConfigToProto(const fl::RuleConfig& rule, v1::AggregatorConfig* config);

// The round policy a RoundConfig describes: `policy` with its `options` when named, else
// "barrier" with `shards` reporters when shards > 0, else "deadline_quota" (duration default
// 30 s, min_participants default 1). InvalidArgument naming the field otherwise.
absl::StatusOr<fl::RoundPolicyConfig> RoundPolicyConfigFromProto(const v1::RoundConfig& config);

// Fills the fields an AggregatorConfig leaves unset with their defaults: kind "adaptive" (FedAU),
// global_learning_rate 1. Fields already set are kept.
void ApplyAggregatorDefaults(v1::AggregatorConfig& config);
// Fills the fields a Recipe leaves unset (zero or empty) with their defaults: local_steps 5,
// batch_size 16, learning_rate 0.1, optimizer "sgd". Fields already set are kept.
void ApplyRecipeDefaults(v1::Recipe& recipe);

// The module a ModuleConfig configures: its name and role, and for role "pet" its PET kind and
// sites. InvalidArgument naming the module for an empty name, an unknown role or PET config, and
// for the roles that are never configured one by one (expert and base_expert: devices propose
// them and pool.base_experts serves them; instance_pool: the fedins section creates them).
absl::StatusOr<fl::ModuleSpec> ModuleSpecFromProto(const v1::ModuleConfig& config);

// The pool a PoolConfig describes, for a model whose block inputs have `statistics_dim` features
// (the ViT's width). Not validated: ModulePoolOptions::Validate checks the ranges, and what
// depends on the model (a ViT, blocks below its depth) is the caller's to check.
fl::ModulePoolOptions PoolOptionsFromProto(const v1::PoolConfig& config, int statistics_dim);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_FL_CONFIG_H_
