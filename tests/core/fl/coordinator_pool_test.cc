// The coordinator's growing pool of expert modules: proposals, distribution, per-(client, module)
// FedAU aggregation over a module's holders, errors that change nothing, and restarts.
#include <cmath>
#include <memory>
#include <vector>

#include "core/fl/coordinator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

using ::testing::HasSubstr;

constexpr int kDim = 4;
constexpr int kBottleneck = 2;
constexpr int kExpertSize = 2 * kDim + 2 + kDim * 2 + kDim + kDim + 1;  // 27

CoordinatorOptions PoolOptions(int capacity = 4) {
  CoordinatorOptions options;
  options.pool.expandable_blocks = {1, 2};
  options.pool.statistics_dim = kDim;
  options.pool.expert_bottleneck = kBottleneck;
  options.pool.capacity = capacity;
  options.pool.round_window = 5;
  options.pool.divergence_threshold = 0.5;
  return options;
}

// The base module "m": 9 values.
StoredModule BaseModule() {
  StoredModule module;
  module.spec = {"m", ModuleRole::kHead, {}};
  module.values.Add("w", {9}, true);
  module.values.flat_values().setZero();
  return module;
}

ModuleProposal Expert(ClientId client, int64_t round, int block, float mean, float variance,
                      float fill) {
  ModuleProposal p;
  p.client = client;
  p.round = round;
  p.block = block;
  p.spec.name = "mine";
  p.spec.role = ModuleRole::kExpert;
  for (const TensorSpec& t : ExpertLayout(kDim, kBottleneck)) p.values.Add(t.name, t.shape, true);
  p.values.flat_values().setConstant(fill);
  p.statistics = {std::vector<float>(kDim, mean), std::vector<float>(kDim, variance)};
  p.descriptor.Add("prototype", {kDim}, false);
  p.descriptor.flat_values().setConstant(mean);
  return p;
}

// An update with one delta of `fill` per named module; owns its values.
struct Update {
  std::vector<std::vector<float>> values;
  UpdateSubmission submission;
  Update(ClientId client, int64_t round, const std::vector<std::pair<std::string, int64_t>>& mods,
         float fill) {
    submission.client = client;
    submission.round = round;
    submission.num_samples = 10;
    values.reserve(mods.size());
    for (const auto& [name, version] : mods) {
      const bool expert = name != "m";
      values.emplace_back(expert ? kExpertSize : 9, fill);
      std::vector<TensorSpec> layout =
          expert ? ExpertLayout(kDim, kBottleneck) : std::vector<TensorSpec>{{"w", {9}}};
      submission.modules.push_back({name, version, layout, absl::MakeSpan(values.back())});
    }
  }
};

const ModuleSnapshot* Find(const std::vector<ModuleSnapshot>& modules, const std::string& name) {
  for (const ModuleSnapshot& m : modules) {
    if (m.spec.name == name) return &m;
  }
  return nullptr;
}

int64_t VersionOf(const Coordinator& c, const std::string& name) {
  const auto modules = c.Modules();
  const ModuleSnapshot* m = Find(modules, name);
  return m == nullptr ? -1 : m->version;
}

std::vector<float> ValuesOf(const Coordinator& c, const std::string& name) {
  const auto modules = c.Modules();
  const ModuleSnapshot* m = Find(modules, name);
  if (m == nullptr) return {};
  const auto& v = m->values->flat_values();
  return std::vector<float>(v.data(), v.data() + v.size());
}

std::vector<std::string> Listed(const WorkAssignment& work) {
  std::vector<std::string> names;
  for (const ModuleInfo& info : work.modules) names.push_back(info.spec.name);
  return names;
}

class CoordinatorPoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<Coordinator> Make(CoordinatorOptions options = PoolOptions()) {
    std::vector<StoredModule> modules;
    modules.push_back(BaseModule());
    auto c = Coordinator::Create(options, clock_, &store_, std::move(modules));
    EXPECT_TRUE(c.ok()) << c.status();
    return *std::move(c);
  }
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  MemoryStateStore store_;
};

TEST_F(CoordinatorPoolTest, CloseProposalsShareOneModuleTrainedByItsHoldersWithFedAuWeights) {
  auto c = Make();
  for (ClientId id : {1, 2, 3}) ASSERT_TRUE(c->Enroll(id).ok());
  auto first = c->ProposeModule(Expert(1, 0, 1, 0.0f, 1.0f, 0.5f));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->merged);
  auto second = c->ProposeModule(Expert(2, 0, 1, 0.1f, 1.1f, 9.0f));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->merged);
  EXPECT_EQ(second->module_id, first->module_id);
  EXPECT_GT(second->divergence, 0.0);

  CoordinatorStatus status = c->Status();
  ASSERT_EQ(status.pool.size(), 1u);
  EXPECT_EQ(status.pool[0].name, "block1/m1");
  EXPECT_EQ(status.pool[0].block, 1);
  EXPECT_EQ(status.pool[0].holders, 2);
  EXPECT_EQ(status.pool_merges, 1);
  // The founder's values, not the second proposer's.
  for (float v : ValuesOf(*c, "block1/m1")) EXPECT_FLOAT_EQ(v, 0.5f);
  // Holders are sent it (with its descriptor, for those who ask); others are not.
  EXPECT_THAT(Listed(*c->GetWork(3, {})), ::testing::ElementsAre("m"));
  EXPECT_THAT(Listed(*c->GetWork(2, {})), ::testing::ElementsAre("m", "block1/m1"));
  auto snapshot = c->GetModule("block1/m1", 0);
  ASSERT_TRUE(snapshot.ok());
  ASSERT_NE(snapshot->descriptor, nullptr);
  EXPECT_FLOAT_EQ(snapshot->descriptor->flat_values()[0], 0.0f);

  // Round 0: client 1 trains the base module only (its base counter moves, not its expert one).
  Update base0(1, 0, {{"m", 0}}, 0.0f);
  ASSERT_TRUE(c->Submit(base0.submission).ok());
  ASSERT_TRUE(c->CloseRound().ok());
  // Round 1: client 1 alone trains the expert: weight 1, N = 2 holders (not 3 enrolled).
  Update u1(1, 1, {{"m", VersionOf(*c, "m")}, {"block1/m1", 0}}, 0.25f);
  ASSERT_TRUE(c->Submit(u1.submission).ok());
  Update outsider(3, 1, {{"block1/m1", 0}}, 1.0f);
  EXPECT_EQ(c->Submit(outsider.submission).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(c->CloseRound().ok());
  for (float v : ValuesOf(*c, "block1/m1")) EXPECT_FLOAT_EQ(v, 0.5f + 0.25f / 2);
  EXPECT_EQ(VersionOf(*c, "block1/m1"), 2);
  // Round 2: both train it. Client 1's expert counter holds one interval of 2 (enrolled as a
  // holder at round 0, took part in round 1) → weight 2; client 2's has none → weight 1. Client
  // 1's base weight is 1 (intervals 1, 1): the expert weight is the module's own.
  const int64_t v = VersionOf(*c, "block1/m1");
  Update a(1, 2, {{"block1/m1", v}}, 0.5f), b(2, 2, {{"block1/m1", v}}, -0.25f);
  auto result = c->Submit(a.submission);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_DOUBLE_EQ(result->weight, 1.0);
  ASSERT_TRUE(c->Submit(b.submission).ok());
  EXPECT_EQ(c->Status().pool[0].contributors, 2);
  ASSERT_TRUE(c->CloseRound().ok());
  // x += (1/N)·Σ ω·Δ = (2·0.5 + 1·(−0.25)) / 2.
  for (float value : ValuesOf(*c, "block1/m1")) EXPECT_FLOAT_EQ(value, 0.625f + 0.375f);
  const std::vector<RoundReport> reports = c->TakeRoundReports();
  ASSERT_EQ(reports.size(), 3u);
  ASSERT_EQ(reports[2].pool.size(), 1u);
  EXPECT_EQ(reports[2].pool[0].contributors, 2);
  EXPECT_EQ(reports[2].pool[0].holders, 2);
  EXPECT_EQ(reports[2].pool[0].version, 3);
  EXPECT_EQ(reports[2].pool_merges, 1);
  EXPECT_EQ(reports[1].pool[0].contributors, 1);
}

TEST_F(CoordinatorPoolTest, AFarProposalFoundsASecondModuleThatTheBlocksHoldersReceive) {
  auto c = Make();
  for (ClientId id : {1, 2, 3}) ASSERT_TRUE(c->Enroll(id).ok());
  ASSERT_TRUE(c->ProposeModule(Expert(1, 0, 1, 0.0f, 1.0f, 0.5f)).ok());
  auto far = c->ProposeModule(Expert(2, 0, 1, 5.0f, 1.0f, 0.5f));
  ASSERT_TRUE(far.ok()) << far.status();
  EXPECT_FALSE(far->merged);
  EXPECT_EQ(far->module_id, 2);
  auto other_block = c->ProposeModule(Expert(3, 0, 2, 0.0f, 1.0f, 0.5f));
  ASSERT_TRUE(other_block.ok());
  EXPECT_FALSE(other_block->merged);
  // Client 1 holds an expert of block 1, so it gets the whole mixture of block 1 (and becomes a
  // holder of block1/m2), but nothing of block 2.
  EXPECT_THAT(Listed(*c->GetWork(1, {})), ::testing::ElementsAre("m", "block1/m1", "block1/m2"));
  const CoordinatorStatus status = c->Status();
  ASSERT_EQ(status.pool.size(), 3u);
  EXPECT_EQ(status.pool[0].holders, 1);  // block1/m1: client 1
  EXPECT_EQ(status.pool[1].holders, 2);  // block1/m2: clients 2 and 1
  EXPECT_EQ(status.pool[2].holders, 1);  // block2/m3: client 3
  EXPECT_EQ(status.pool_merges, 0);
}

// Everything observable about the pool, for "nothing changed" checks.
struct PoolSnapshot {
  std::vector<std::string> names;
  std::vector<int64_t> holders;
  int64_t merges = 0;
  size_t stored_modules = 0, stored_holders = 0;
  bool operator==(const PoolSnapshot&) const = default;
};

PoolSnapshot Snapshot(const Coordinator& c, const MemoryStateStore& store) {
  PoolSnapshot s;
  const CoordinatorStatus status = c.Status();
  for (const ModuleVersion& m : status.modules) s.names.push_back(m.name);
  for (const PoolModuleStatus& m : status.pool) s.holders.push_back(m.holders);
  s.merges = status.pool_merges;
  const StoredState stored = *store.Load();
  s.stored_modules = stored.pool.modules.size();
  s.stored_holders = stored.pool.holders.size();
  return s;
}

TEST_F(CoordinatorPoolTest, BadProposalsAreRefusedAndChangeNothing) {
  auto c = Make(PoolOptions(/*capacity=*/1));
  for (ClientId id : {1, 2}) ASSERT_TRUE(c->Enroll(id).ok());
  ASSERT_TRUE(c->ProposeModule(Expert(1, 0, 1, 0.0f, 1.0f, 0.5f)).ok());
  const PoolSnapshot before = Snapshot(*c, store_);

  struct Case {
    const char* name;
    ModuleProposal proposal;
    absl::StatusCode code;
    const char* message;
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, absl::StatusCode code, const char* message, auto change) {
    ModuleProposal p = Expert(2, 0, 1, 0.05f, 1.0f, 0.5f);
    change(p);
    cases.push_back({name, std::move(p), code, message});
  };
  using Code = absl::StatusCode;
  add("unknown block", Code::kInvalidArgument, "block 0 is not an expandable block",
      [](ModuleProposal& p) { p.block = 0; });
  add("wrong role", Code::kInvalidArgument, "expert modules only",
      [](ModuleProposal& p) { p.spec.role = ModuleRole::kPet; });
  add("wrong layout", Code::kInvalidArgument, "does not have the layout", [](ModuleProposal& p) {
    p.values = nn::ParameterSet();
    p.values.Add("down.weight", {kDim, kBottleneck}, true);
  });
  add("NaN statistics", Code::kInvalidArgument, "not finite",
      [](ModuleProposal& p) { p.statistics.mean[2] = std::nanf(""); });
  add("zero variance", Code::kInvalidArgument, "positive variances",
      [](ModuleProposal& p) { p.statistics.variance[0] = 0.0f; });
  add("statistics of the wrong size", Code::kInvalidArgument, "dimensions",
      [](ModuleProposal& p) { p.statistics.mean.push_back(0.0f); });
  add("Inf value", Code::kInvalidArgument, "values are not finite",
      [](ModuleProposal& p) { p.values.flat_values()[3] = INFINITY; });
  add("NaN descriptor", Code::kInvalidArgument, "descriptor",
      [](ModuleProposal& p) { p.descriptor.flat_values()[0] = std::nanf(""); });
  add("over capacity", Code::kResourceExhausted, "capacity of 1",
      [](ModuleProposal& p) { p.statistics.mean.assign(kDim, 7.0f); });
  add("unknown client", Code::kNotFound, "unknown client", [](ModuleProposal& p) { p.client = 9; });
  add("future round", Code::kOutOfRange, "has not opened", [](ModuleProposal& p) { p.round = 4; });
  for (const Case& k : cases) {
    absl::StatusOr<ProposalResult> result = c->ProposeModule(k.proposal);
    EXPECT_EQ(result.status().code(), k.code) << k.name << ": " << result.status();
    EXPECT_THAT(result.status().message(), HasSubstr(k.message)) << k.name;
    EXPECT_EQ(Snapshot(*c, store_), before) << k.name;
  }
  // A store that cannot make the proposal durable: refused, and not applied either.
  store_.FailNextPoolWrites(1);
  EXPECT_EQ(c->ProposeModule(Expert(2, 0, 1, 0.05f, 1.0f, 0.5f)).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(Snapshot(*c, store_), before);
  // The same proposal, valid, then merges.
  EXPECT_TRUE(c->ProposeModule(Expert(2, 0, 1, 0.05f, 1.0f, 0.5f))->merged);
}

TEST_F(CoordinatorPoolTest, WithoutExpandableBlocksProposalsAreRefused) {
  auto c = Make(CoordinatorOptions{});
  ASSERT_TRUE(c->Enroll(1).ok());
  auto result = c->ProposeModule(Expert(1, 0, 1, 0.0f, 1.0f, 0.5f));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("no expandable blocks"));
  EXPECT_TRUE(c->Status().pool.empty());
}

TEST_F(CoordinatorPoolTest, AnExpertCannotBeAnInitialModule) {
  std::vector<StoredModule> modules;
  modules.push_back(BaseModule());
  modules[0].spec.role = ModuleRole::kExpert;
  auto c = Coordinator::Create(PoolOptions(), clock_, &store_, std::move(modules));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

// A crash mid-round 2 (with a module founded in that round, so only in the registry, and
// journaled expert updates) and a restart give exactly the uninterrupted run: the pool, its
// holders and their per-(client, module) counters all survive.
// Proposals are made at detection, before the device has trained its descriptor: a proposer
// attaches it afterwards. The first one stays, GetWork says the expert has one, it survives a
// restart, and bad attachments are refused and change nothing.
TEST_F(CoordinatorPoolTest, AProposerAttachesTheDescriptorOnceAndItSurvivesARestart) {
  auto c = Make();
  for (ClientId id : {1, 2, 3}) ASSERT_TRUE(c->Enroll(id).ok());
  ModuleProposal bare = Expert(1, 0, 1, 0.0f, 1.0f, 0.5f);
  bare.descriptor = nn::ParameterSet();
  ASSERT_TRUE(c->ProposeModule(bare).ok());
  ModuleProposal joining = Expert(2, 0, 1, 0.1f, 1.0f, 0.5f);
  joining.descriptor = nn::ParameterSet();
  ASSERT_TRUE(c->ProposeModule(joining).ok());
  EXPECT_EQ(c->GetModule("block1/m1", 0)->descriptor, nullptr);
  auto has_descriptor = [&](ClientId client) {
    for (const ModuleInfo& info : c->GetWork(client, {})->modules)
      if (info.spec.name == "block1/m1") return info.has_descriptor;
    return false;
  };
  EXPECT_FALSE(has_descriptor(1));

  nn::ParameterSet descriptor("descriptor");
  descriptor.Add("losses", {3}, false);
  descriptor.flat_values() << 1.0f, 2.0f, 3.0f;
  // Client 3 founds another module of block 1 and so receives (holds) block1/m1 too, which it did
  // not train.
  ModuleProposal far = Expert(3, 0, 1, 5.0f, 1.0f, 0.5f);
  far.descriptor = nn::ParameterSet();
  ASSERT_EQ(c->ProposeModule(far)->name, "block1/m2");
  ASSERT_TRUE(c->GetWork(3, {}).ok());
  // Refusals: an unknown client, a base module or unknown name, a holder that did not propose
  // the expert, an empty or non-finite descriptor.
  EXPECT_EQ(c->AttachDescriptor(9, "block1/m1", descriptor).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(c->AttachDescriptor(1, "m", descriptor).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->AttachDescriptor(1, "block1/m7", descriptor).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(c->AttachDescriptor(3, "block1/m1", descriptor).status().message(),
              HasSubstr("did not propose"));
  EXPECT_EQ(c->AttachDescriptor(1, "block1/m1", nn::ParameterSet()).status().code(),
            absl::StatusCode::kInvalidArgument);
  nn::ParameterSet bad = descriptor;
  bad.flat_values()(1) = NAN;
  EXPECT_EQ(c->AttachDescriptor(1, "block1/m1", bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  store_.FailNextPoolWrites(1);
  EXPECT_EQ(c->AttachDescriptor(2, "block1/m1", descriptor).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(c->GetModule("block1/m1", 0)->descriptor, nullptr);

  // The joiner's comes first and stays; the founder's is not taken.
  EXPECT_EQ(c->AttachDescriptor(2, "block1/m1", descriptor).value_or(false), true);
  nn::ParameterSet other = descriptor;
  other.flat_values().setConstant(7.0f);
  EXPECT_EQ(c->AttachDescriptor(1, "block1/m1", other).value_or(true), false);
  ASSERT_NE(c->GetModule("block1/m1", 0)->descriptor, nullptr);
  EXPECT_EQ(c->GetModule("block1/m1", 0)->descriptor->flat_values(), descriptor.flat_values());
  EXPECT_TRUE(has_descriptor(1));

  c.reset();
  auto recovered = Coordinator::Recover(PoolOptions(), clock_, &store_, *store_.Load());
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  ASSERT_NE((*recovered)->GetModule("block1/m1", 0)->descriptor, nullptr);
  EXPECT_EQ((*recovered)->GetModule("block1/m1", 0)->descriptor->flat_values(),
            descriptor.flat_values());
}

TEST_F(CoordinatorPoolTest, RestartKeepsThePoolHoldersAndCounters) {
  struct Outcome {
    std::vector<std::vector<float>> values;
    std::vector<PoolModuleStatus> pool;
    std::vector<PoolHolder> holders;
  };
  auto run = [&](bool crash) {
    MemoryStateStore store;
    base::ManualClock clock(absl::FromUnixSeconds(1000));
    std::vector<StoredModule> modules;
    modules.push_back(BaseModule());
    auto c = *Coordinator::Create(PoolOptions(), clock, &store, std::move(modules));
    for (ClientId id : {1, 2, 3}) EXPECT_TRUE(c->Enroll(id).ok());
    EXPECT_TRUE(c->ProposeModule(Expert(1, 0, 1, 0.0f, 1.0f, 0.5f)).ok());
    EXPECT_TRUE(c->ProposeModule(Expert(2, 0, 1, 0.1f, 1.0f, 0.5f)).ok());
    for (int round = 0; round < 4; ++round) {
      const int64_t v = VersionOf(*c, "block1/m1");
      if (round == 2) {
        EXPECT_TRUE(c->ProposeModule(Expert(3, 2, 2, 0.0f, 2.0f, -1.0f)).ok());
      }
      if (round != 1) {
        Update a(1, round, {{"block1/m1", v}}, 0.125f * (round + 1));
        EXPECT_TRUE(c->Submit(a.submission).ok());
      }
      Update b(2, round, {{"block1/m1", v}}, -0.25f);
      EXPECT_TRUE(c->Submit(b.submission).ok());
      if (round >= 2) {
        Update d(3, round, {{"block2/m2", VersionOf(*c, "block2/m2")}}, 0.75f);
        EXPECT_TRUE(c->Submit(d.submission).ok());
      }
      if (crash && round == 2) {
        const std::vector<PoolHolder> holders = store.Load()->pool.holders;
        c.reset();
        auto recovered = Coordinator::Recover(PoolOptions(), clock, &store, *store.Load());
        EXPECT_TRUE(recovered.ok()) << recovered.status();
        c = *std::move(recovered);
        EXPECT_EQ(c->Status().accepted, 3);
        EXPECT_EQ(c->Status().pool.size(), 2u);
        EXPECT_EQ(c->Status().pool[0].holders, 2);
        EXPECT_EQ(c->Status().pool[0].contributors, 2);
        EXPECT_EQ(c->Status().pool_merges, 1);
        EXPECT_EQ(VersionOf(*c, "block2/m2"), 0);
        const std::vector<PoolHolder> after = store.Load()->pool.holders;
        EXPECT_EQ(after.size(), holders.size());
        for (size_t i = 0; i < std::min(after.size(), holders.size()); ++i) {
          EXPECT_EQ(after[i].fedau, holders[i].fedau);
        }
      }
      EXPECT_TRUE(c->CloseRound().ok());
    }
    Outcome outcome;
    for (const char* name : {"m", "block1/m1", "block2/m2"})
      outcome.values.push_back(ValuesOf(*c, name));
    outcome.pool = c->Status().pool;
    outcome.holders = store.Load()->pool.holders;
    return outcome;
  };
  const Outcome crashed = run(true), uninterrupted = run(false);
  EXPECT_EQ(crashed.values, uninterrupted.values);
  ASSERT_EQ(crashed.pool.size(), uninterrupted.pool.size());
  for (size_t i = 0; i < crashed.pool.size(); ++i) {
    EXPECT_EQ(crashed.pool[i].name, uninterrupted.pool[i].name);
    EXPECT_EQ(crashed.pool[i].version, uninterrupted.pool[i].version);
    EXPECT_EQ(crashed.pool[i].holders, uninterrupted.pool[i].holders);
  }
  ASSERT_EQ(crashed.holders.size(), 3u);  // (m1, 1), (m1, 2), (m2, 3)
  ASSERT_EQ(crashed.holders.size(), uninterrupted.holders.size());
  for (size_t i = 0; i < crashed.holders.size(); ++i) {
    EXPECT_EQ(crashed.holders[i].fedau, uninterrupted.holders[i].fedau);
  }
  // Client 1 took part in block1/m1 in rounds 0, 2, 3 from holder round 0: intervals 1, 2, 1.
  EXPECT_EQ(crashed.holders[0].fedau.intervals, 3);
  EXPECT_EQ(crashed.holders[0].fedau.interval_sum, 4);
  // The values moved: block1/m1 by the holders' updates, block2/m2 from its founding -1.
  EXPECT_NE(crashed.values[1], std::vector<float>(kExpertSize, 0.5f));
  EXPECT_FLOAT_EQ(crashed.values[2][0], -1.0f + 0.75f + 0.75f);  // N = 1, weights 1 then 1
}

}  // namespace
}  // namespace fedcl::fl
