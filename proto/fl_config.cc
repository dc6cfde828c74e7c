#include "proto/fl_config.h"

#include "core/base/status_macros.h"

namespace fedcl::proto {

absl::StatusOr<fl::RuleConfig> RuleConfigFromProto(const v1::AggregatorConfig& config) {
  fl::RuleConfig rule;
  if (!config.kind().empty()) rule.name = config.kind();
  if (config.global_learning_rate() != 0) rule.global_learning_rate = config.global_learning_rate();
  rule.fedau_cutoff = config.fedau_cutoff();
  rule.options = config.options();
  FEDCL_RETURN_IF_ERROR(fl::CreateAggregationRule(rule).status());
  return rule;
}

absl::StatusOr<fl::RoundPolicyConfig> RoundPolicyConfigFromProto(const v1::RoundConfig& config) {
  fl::RoundPolicyConfig round;
  if (config.duration_ms() != 0) round.round_duration = absl::Milliseconds(config.duration_ms());
  if (config.has_min_participants()) round.min_participants = config.min_participants();
  round.max_participants = config.max_participants();
  if (config.shards() > 0) {
    round.name = "barrier";
    round.reporters = config.shards();
  }
  FEDCL_RETURN_IF_ERROR(fl::CreateRoundPolicy(round).status());
  return round;
}

}  // namespace fedcl::proto
