#include "proto/fl_config.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"

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

void RuleConfigToProto(const fl::RuleConfig& rule, v1::AggregatorConfig* config) {
  config->set_kind(rule.name);
  config->set_global_learning_rate(rule.global_learning_rate);
  config->set_fedau_cutoff(rule.fedau_cutoff);
  config->set_options(rule.options);
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
  if (!config.policy().empty()) {
    if (config.shards() > 0 && config.policy() != "barrier") {
      return absl::InvalidArgumentError(absl::StrCat(
          "round.policy '", config.policy(), "' cannot take simulator shards (round.shards)"));
    }
    round.name = config.policy();
  }
  round.options = config.options();
  FEDCL_RETURN_IF_ERROR(fl::CreateRoundPolicy(round).status());
  return round;
}

void ApplyAggregatorDefaults(v1::AggregatorConfig& config) {
  if (config.kind().empty()) config.set_kind("adaptive");
  if (config.global_learning_rate() == 0) config.set_global_learning_rate(1.0);
}

void ApplyRecipeDefaults(v1::Recipe& recipe) {
  if (recipe.local_steps() == 0) recipe.set_local_steps(5);
  if (recipe.batch_size() == 0) recipe.set_batch_size(16);
  if (recipe.learning_rate() == 0) recipe.set_learning_rate(0.1f);
  if (recipe.optimizer().empty()) recipe.set_optimizer("sgd");
}

absl::StatusOr<fl::ModuleSpec> ModuleSpecFromProto(const v1::ModuleConfig& config) {
  fl::ModuleSpec spec;
  spec.name = config.name();
  if (spec.name.empty()) return absl::InvalidArgumentError("a module needs a name");
  const auto invalid = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("module '", spec.name, "': ", message));
  };
  absl::StatusOr<fl::ModuleRole> role = fl::ParseModuleRole(config.role());
  if (!role.ok()) return invalid(role.status().message());
  spec.role = *role;
  if (spec.role == fl::ModuleRole::kExpert || spec.role == fl::ModuleRole::kBaseExpert) {
    return invalid(
        "expert modules are not configured: devices add them with ProposeModule, and "
        "pool.base_experts serves every block's first one");
  }
  if (spec.role == fl::ModuleRole::kInstancePool) {
    return invalid(
        "instance-pool modules are not configured one by one: the fedins section creates them");
  }
  if (spec.role == fl::ModuleRole::kPet) {
    absl::StatusOr<peft::PetConfig> pet = FromProto(config.pet());
    if (!pet.ok()) return invalid(pet.status().message());
    spec.pet = *pet;
  }
  return spec;
}

fl::ModulePoolOptions PoolOptionsFromProto(const v1::PoolConfig& config, int statistics_dim) {
  fl::ModulePoolOptions o;
  o.expandable_blocks.assign(config.expandable_blocks().begin(), config.expandable_blocks().end());
  o.statistics_dim = statistics_dim;
  o.capacity = config.capacity();
  o.round_window = config.round_window();
  o.divergence_threshold = config.divergence_threshold();
  o.expert_bottleneck = config.expert_bottleneck();
  return o;
}

}  // namespace fedcl::proto
