#include "proto/fl_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/text_format.h"

namespace fedcl::proto {
namespace {

using ::testing::HasSubstr;

template <typename Message>
Message Parse(const std::string& text) {
  Message message;
  EXPECT_TRUE(ParseTextFormat(text, &message).ok()) << text;
  return message;
}

TEST(FlConfigTest, ModuleSpecMapsNameRoleAndPetConfig) {
  absl::StatusOr<fl::ModuleSpec> head =
      ModuleSpecFromProto(Parse<v1::ModuleConfig>("name: 'h' role: 'head'"));
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->name, "h");
  EXPECT_EQ(head->role, fl::ModuleRole::kHead);
  absl::StatusOr<fl::ModuleSpec> lora = ModuleSpecFromProto(
      Parse<v1::ModuleConfig>("name: 'l' role: 'pet' pet { kind: 'lora' lora_rank: 3 lora_alpha: 6 "
                              "site_prefixes: 'blocks.1' }"));
  ASSERT_TRUE(lora.ok()) << lora.status();
  EXPECT_EQ(lora->role, fl::ModuleRole::kPet);
  EXPECT_EQ(lora->pet.kind, peft::PetKind::kLora);
  EXPECT_EQ(lora->pet.lora_rank, 3);
  EXPECT_FLOAT_EQ(lora->pet.lora_alpha, 6.0f);
  EXPECT_THAT(lora->pet.site_prefixes, ::testing::ElementsAre("blocks.1"));
}

TEST(FlConfigTest, ModulesThatAreNotConfiguredOneByOneAreRefusedNamingTheModule) {
  auto error = [](const std::string& text) {
    absl::StatusOr<fl::ModuleSpec> spec = ModuleSpecFromProto(Parse<v1::ModuleConfig>(text));
    EXPECT_TRUE(absl::IsInvalidArgument(spec.status())) << text;
    return std::string(spec.status().message());
  };
  EXPECT_EQ(error("role: 'head'"), "a module needs a name");
  EXPECT_THAT(error("name: 'm' role: 'tail'"), HasSubstr("module 'm': unknown module role"));
  EXPECT_THAT(error("name: 'e' role: 'expert'"), HasSubstr("module 'e': expert modules"));
  EXPECT_THAT(error("name: 'b' role: 'base_expert'"), HasSubstr("module 'b': expert modules"));
  EXPECT_THAT(error("name: 'p' role: 'instance_pool'"),
              HasSubstr("module 'p': instance-pool modules"));
  EXPECT_THAT(error("name: 'x' role: 'pet' pet { kind: 'prefix' }"), HasSubstr("module 'x': "));
}

TEST(FlConfigTest, DefaultsFillOnlyWhatIsUnset) {
  v1::Recipe recipe = Parse<v1::Recipe>("batch_size: 7 optimizer: 'adam'");
  ApplyRecipeDefaults(recipe);
  EXPECT_EQ(recipe.local_steps(), 5);
  EXPECT_EQ(recipe.batch_size(), 7);
  EXPECT_FLOAT_EQ(recipe.learning_rate(), 0.1f);
  EXPECT_EQ(recipe.optimizer(), "adam");
  v1::AggregatorConfig empty;
  ApplyAggregatorDefaults(empty);
  EXPECT_EQ(empty.kind(), "adaptive");
  EXPECT_EQ(empty.global_learning_rate(), 1.0);
  v1::AggregatorConfig set = Parse<v1::AggregatorConfig>("kind: 'mifa' global_learning_rate: 1.7");
  ApplyAggregatorDefaults(set);
  EXPECT_EQ(set.kind(), "mifa");
  EXPECT_EQ(set.global_learning_rate(), 1.7);
}

TEST(FlConfigTest, RuleConfigRoundTripsThroughItsMessage) {
  fl::RuleConfig rule;
  rule.name = "fedadam";
  rule.global_learning_rate = 0.37;
  rule.fedau_cutoff = 13;
  rule.options = "beta1: 0.8 tau: 0.002";
  v1::AggregatorConfig message;
  RuleConfigToProto(rule, &message);
  absl::StatusOr<fl::RuleConfig> back = RuleConfigFromProto(message);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->name, rule.name);
  EXPECT_EQ(back->global_learning_rate, rule.global_learning_rate);
  EXPECT_EQ(back->fedau_cutoff, rule.fedau_cutoff);
  EXPECT_EQ(back->options, rule.options);
}

TEST(FlConfigTest, RoundConfigNamesItsPolicyAndItsOptions) {
  absl::StatusOr<fl::RoundPolicyConfig> fedbuff = RoundPolicyConfigFromProto(Parse<v1::RoundConfig>(
      R"pb(duration_ms: 5000 policy: "fedbuff" options: "buffer_size: 4 max_staleness: 2")pb"));
  ASSERT_TRUE(fedbuff.ok()) << fedbuff.status();
  EXPECT_EQ(fedbuff->name, "fedbuff");
  EXPECT_EQ(fedbuff->options, "buffer_size: 4 max_staleness: 2");
  EXPECT_EQ(fedbuff->round_duration, absl::Seconds(5));
  EXPECT_EQ(RoundPolicyConfigFromProto(Parse<v1::RoundConfig>("shards: 3"))->name, "barrier");
  EXPECT_EQ(RoundPolicyConfigFromProto(v1::RoundConfig())->name, "deadline_quota");

  absl::StatusOr<fl::RoundPolicyConfig> bad =
      RoundPolicyConfigFromProto(Parse<v1::RoundConfig>(R"pb(policy: "fedbuff"
                                                             options: "buffer_size: 0")pb"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("buffer_size"));
  absl::StatusOr<fl::RoundPolicyConfig> sharded =
      RoundPolicyConfigFromProto(Parse<v1::RoundConfig>(R"pb(policy: "fedbuff" shards: 2)pb"));
  EXPECT_EQ(sharded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sharded.status().message(), HasSubstr("round.shards"));
  absl::StatusOr<fl::RoundPolicyConfig> options =
      RoundPolicyConfigFromProto(Parse<v1::RoundConfig>(R"pb(options: "buffer_size: 2")pb"));
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlConfigTest, PoolOptionsCarryEveryField) {
  const fl::ModulePoolOptions o = PoolOptionsFromProto(
      Parse<v1::PoolConfig>("expandable_blocks: 3 expandable_blocks: 1 capacity: 29 "
                            "round_window: 0 divergence_threshold: 0.73 expert_bottleneck: 11"),
      48);
  EXPECT_EQ(o.expandable_blocks, (std::vector<int>{3, 1}));
  EXPECT_EQ(o.statistics_dim, 48);
  EXPECT_EQ(o.capacity, 29);
  EXPECT_EQ(o.round_window, 0);
  EXPECT_EQ(o.divergence_threshold, 0.73);
  EXPECT_EQ(o.expert_bottleneck, 11);
  EXPECT_TRUE(o.Validate().ok());
}

}  // namespace
}  // namespace fedcl::proto
