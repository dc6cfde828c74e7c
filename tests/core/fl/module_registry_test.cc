#include "core/fl/module_registry.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

using ::testing::HasSubstr;

BlockStatistics Stats(float mean, float variance, int d = 4) {
  return {std::vector<float>(d, mean), std::vector<float>(d, variance)};
}

ModuleProposal Proposal(ClientId client, int64_t round, int block, BlockStatistics stats,
                        float fill = 0.5f) {
  ModuleProposal p;
  p.client = client;
  p.round = round;
  p.block = block;
  p.spec.name = "adapter";
  p.spec.role = ModuleRole::kPet;
  p.values.Add("down", {4, 2}, true);
  p.values.Add("up", {2, 4}, true);
  p.values.flat_values().setConstant(fill);
  p.statistics = std::move(stats);
  return p;
}

ModuleRegistryOptions Options() {
  ModuleRegistryOptions o;
  o.expandable_blocks = {2, 3};
  o.statistics_dim = 4;
  o.capacity = 3;
  o.round_window = 5;
  o.divergence_threshold = 0.5;
  o.layout = [](const ModuleSpec&, int) -> absl::StatusOr<std::vector<TensorSpec>> {
    return std::vector<TensorSpec>{{"down", {4, 2}}, {"up", {2, 4}}};
  };
  return o;
}

TEST(SymmetricDivergenceTest, ZeroForEqualSymmetricAndAsDerived) {
  EXPECT_DOUBLE_EQ(SymmetricDivergence(Stats(1, 2), Stats(1, 2)), 0.0);
  const BlockStatistics p = {{0, 1}, {1, 2}}, q = {{1, 1}, {2, 2}};
  EXPECT_DOUBLE_EQ(SymmetricDivergence(p, q), SymmetricDivergence(q, p));
  // Dimension 0: 1/2 + 2 − 2 + 1·(1 + 1/2) = 2; dimension 1: 0. Over 2·d = 4.
  EXPECT_DOUBLE_EQ(SymmetricDivergence(p, q), 2.0 / 4.0);
}

TEST(ModuleRegistryTest, ProposalsForTheSameShiftJoinOneModule) {
  ModuleRegistry registry(Options());
  absl::StatusOr<ProposalResult> first = registry.Propose(Proposal(10, 4, 3, Stats(0, 1), 0.5f));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->merged);
  // Another device, same block, close statistics, two rounds later: joins it, and its own
  // parameters are not used.
  absl::StatusOr<ProposalResult> second =
      registry.Propose(Proposal(11, 6, 3, Stats(0.1f, 1.1f), 9.0f));
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->merged);
  EXPECT_EQ(second->module_id, first->module_id);
  EXPECT_EQ(registry.size(), 1);
  const RegisteredModule* module = registry.Find(first->module_id);
  EXPECT_FLOAT_EQ(module->values.flat_values()[0], 0.5f);
  EXPECT_EQ(module->proposers, (std::vector<ClientId>{10, 11}));
  EXPECT_EQ(module->name, "block3/m1");
  // A different shift, another block, or too late: new modules.
  EXPECT_FALSE(registry.Propose(Proposal(12, 6, 3, Stats(5, 1)))->merged);
  EXPECT_FALSE(registry.Propose(Proposal(13, 6, 2, Stats(0, 1)))->merged);
  EXPECT_EQ(registry.size(), 3);
  EXPECT_EQ(registry.merges(), 1);
}

TEST(ModuleRegistryTest, BadProposalsAreRefusedAndChangeNothing) {
  ModuleRegistry registry(Options());
  ASSERT_TRUE(registry.Propose(Proposal(1, 0, 3, Stats(0, 1))).ok());
  EXPECT_THAT(registry.Propose(Proposal(2, 0, 1, Stats(0, 1))).status().message(),
              HasSubstr("block 1 is not an expandable block"));
  ModuleProposal shape = Proposal(2, 0, 3, Stats(0, 1));
  shape.values = nn::ParameterSet();
  shape.values.Add("down", {4, 3}, true);
  shape.values.Add("up", {3, 4}, true);
  EXPECT_THAT(registry.Propose(shape).status().message(), HasSubstr("layout"));
  BlockStatistics nan = Stats(0, 1);
  nan.mean[2] = NAN;
  EXPECT_THAT(registry.Propose(Proposal(2, 0, 3, nan)).status().message(), HasSubstr("not finite"));
  EXPECT_THAT(registry.Propose(Proposal(2, 0, 3, Stats(0, 0))).status().message(),
              HasSubstr("positive variances"));
  EXPECT_THAT(registry.Propose(Proposal(2, 0, 3, Stats(0, 1, 5))).status().message(),
              HasSubstr("4 dimensions"));
  EXPECT_EQ(registry.size(), 1);
  EXPECT_EQ(registry.merges(), 0);
  // Capacity: a fourth distinct module is refused; merging into a full pool still works.
  ASSERT_TRUE(registry.Propose(Proposal(3, 0, 3, Stats(8, 1))).ok());
  ASSERT_TRUE(registry.Propose(Proposal(4, 0, 3, Stats(16, 1))).ok());
  absl::StatusOr<ProposalResult> full = registry.Propose(Proposal(5, 0, 3, Stats(30, 1)));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(registry.Propose(Proposal(6, 1, 3, Stats(8.05f, 1)))->merged);
  EXPECT_EQ(registry.size(), 3);
}

// FedAU per (client, module): the counter starts when the device receives the module, and N is
// the number of holders.
TEST(ModuleRegistryTest, FedAuStatePerClientAndModuleStartsAtReceipt) {
  ModuleRegistry registry(Options());
  const int64_t id = registry.Propose(Proposal(1, 10, 3, Stats(0, 1)))->module_id;
  ASSERT_TRUE(registry.AddHolder(id, 1, 10).ok());
  ASSERT_TRUE(registry.AddHolder(id, 2, 14).ok());
  ASSERT_TRUE(registry.AddHolder(id, 2, 20).ok());  // idempotent: keeps round 14
  EXPECT_EQ(*registry.Holders(id), 2);
  // Client 2 takes part at 16 and 19: intervals 3 (from 14) and 3; the weight at 22 is
  // then the mean of 3 and 3 (read before the interval ending at 22 is recorded).
  EXPECT_DOUBLE_EQ(*registry.RecordParticipation(id, 2, 16, kFedAuNoCutoff), 1.0);
  EXPECT_DOUBLE_EQ(*registry.RecordParticipation(id, 2, 19, kFedAuNoCutoff), 3.0);
  EXPECT_DOUBLE_EQ(*registry.Weight(id, 2, 22, kFedAuNoCutoff), 3.0);
  EXPECT_EQ(registry.Weight(id, 3, 22, kFedAuNoCutoff).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.AddHolder(99, 1, 0).code(), absl::StatusCode::kNotFound);
}

// Restore(ExportState()) continues exactly: same modules, holders with their counters, merges
// and next id (the next module founded gets the id the original would have given).
TEST(ModuleRegistryTest, ExportedStateRestoresAnIdenticalRegistry) {
  ModuleRegistry registry(Options());
  const int64_t id = registry.Propose(Proposal(1, 0, 3, Stats(0, 1)))->module_id;
  ASSERT_TRUE(registry.Propose(Proposal(2, 0, 3, Stats(0.05f, 1)))->merged);
  ASSERT_TRUE(registry.AddHolder(id, 1, 0).ok());
  ASSERT_TRUE(registry.AddHolder(id, 2, 1).ok());
  ASSERT_TRUE(registry.RecordParticipation(id, 2, 3, kFedAuNoCutoff).ok());
  absl::StatusOr<ModuleRegistry> restored =
      ModuleRegistry::Restore(Options(), registry.ExportState());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->merges(), 1);
  EXPECT_EQ(*restored->Holders(id), 2);
  EXPECT_EQ(*restored->HolderState(id, 2), *registry.HolderState(id, 2));
  EXPECT_EQ(restored->Find(id)->proposers, (std::vector<ClientId>{1, 2}));
  EXPECT_EQ(restored->Propose(Proposal(3, 0, 2, Stats(0, 1)))->module_id,
            registry.Propose(Proposal(3, 0, 2, Stats(0, 1)))->module_id);

  ModuleRegistryState bad = registry.ExportState();
  bad.holders.push_back({77, 1, FedAuEnrol(0)});
  EXPECT_EQ(ModuleRegistry::Restore(Options(), bad).status().code(), absl::StatusCode::kDataLoss);
}

// Plan decides without changing anything; Apply then does exactly what Propose would have.
TEST(ModuleRegistryTest, PlanChangesNothingUntilApplied) {
  ModuleRegistry registry(Options());
  absl::StatusOr<ProposalPlan> plan = registry.Plan(Proposal(1, 0, 3, Stats(0, 1)));
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(registry.size(), 0);
  EXPECT_EQ(plan->module.name, "block3/m1");
  registry.Apply(*std::move(plan));
  EXPECT_EQ(registry.size(), 1);
  EXPECT_EQ(registry.next_id(), 2);
}

TEST(ModulePoolOptionsTest, ExpertLayoutAndValidation) {
  const std::vector<TensorSpec> layout = ExpertLayout(64, 8);
  ASSERT_EQ(layout.size(), 6u);
  EXPECT_EQ(layout[0].name, "down.weight");
  EXPECT_EQ(layout[0].shape, (nn::Shape{8, 64}));
  EXPECT_EQ(layout[2].shape, (nn::Shape{64, 8}));
  EXPECT_EQ(layout[4].name, "router.weight");
  EXPECT_EQ(layout[5].shape, (nn::Shape{1}));
  ModulePoolOptions options;
  EXPECT_TRUE(options.Validate().ok());
  EXPECT_FALSE(options.enabled());
  options.expandable_blocks = {2, 3, 2};
  EXPECT_THAT(options.Validate().message(), HasSubstr("block 2 is listed twice"));
  options.expandable_blocks = {2, 3};
  options.expert_bottleneck = 65;
  EXPECT_THAT(options.Validate().message(), HasSubstr("expert_bottleneck"));
  options.expert_bottleneck = 8;
  options.divergence_threshold = 0;
  EXPECT_THAT(options.Validate().message(), HasSubstr("divergence_threshold"));
}

}  // namespace
}  // namespace fedcl::fl
