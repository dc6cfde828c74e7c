#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "core/base/clock.h"
#include "core/base/random.h"
#include "core/fl/aggregator.h"
#include "core/fl/coordinator.h"
#include "core/fl/fedau_estimator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSize = 257;

RuleConfig FedAwe(double gamma, double clip_radius) {
  return {.name = "fedawe",
          .global_learning_rate = gamma,
          .options = absl::StrCat("clip_radius: ", clip_radius)};
}

// algorithms-next.md §2.2 as the reference code runs it, in double, with fedcl's one pinned
// difference: a client without a base (never took part) trains from the current model.
struct Reference {
  std::vector<double> x;
  std::map<ClientId, std::vector<double>> base;  // w_n, for clients that took part
  std::map<ClientId, int64_t> tau;               // rounds since the last participation
  double gamma, radius;

  const std::vector<double>& BaseOf(ClientId n) const {
    auto it = base.find(n);
    return it == base.end() ? x : it->second;
  }
  // One round: `deltas[n]` for each participant n (its echo factor is tau[n]); returns whether
  // the clip bit.
  bool Round(const std::map<ClientId, std::vector<double>>& deltas) {
    if (deltas.empty()) return false;
    const double m = static_cast<double>(deltas.size());
    std::vector<double> mean_base(x.size(), 0.0), echo(x.size(), 0.0);
    for (const auto& [n, d] : deltas) {
      const std::vector<double>& w = BaseOf(n);
      for (size_t i = 0; i < x.size(); ++i) {
        mean_base[i] += w[i] / m;
        echo[i] += static_cast<double>(tau.at(n)) * d[i] / m;
      }
    }
    double norm = 0;
    for (double e : echo) norm += e * e;
    norm = std::sqrt(norm);
    const double clip = radius > 0 && norm > radius ? radius / norm : 1.0;
    for (size_t i = 0; i < x.size(); ++i) x[i] = mean_base[i] + gamma * clip * echo[i];
    for (const auto& [n, d] : deltas) base[n] = x;
    return clip < 1.0;
  }
};

// The rule over 40 rounds of random participation and deltas of varied scale (the clip bites in
// some rounds and not in others), against the reference: the module, every client's base version
// and values, and the echo factors.
TEST(FedAweTest, FollowsTheReferenceUpdateWithStaleBasesAndEchoes) {
  base::Rng rng(17);
  const int kClients = 9;
  auto aggregator = ModuleAggregator::Create(FedAwe(0.7, 0.5), kSize, nullptr);
  std::vector<float> params(kSize);
  for (float& v : params) v = static_cast<float>(rng.Normal(0.0, 1.0));
  Reference ref{
      .x = std::vector<double>(params.begin(), params.end()), .gamma = 0.7, .radius = 0.5};
  std::vector<ClientRecord> records(kClients);
  for (int n = 0; n < kClients; ++n) {
    records[n].id = n;
    records[n].fedau = FedAuEnrol(0);
  }
  int clipped_rounds = 0, unclipped_rounds = 0;
  for (int64_t t = 0; t < 40; ++t) {
    for (auto& [n, tau] : ref.tau) ++tau;
    aggregator->BeginRound(t);
    std::map<ClientId, std::vector<double>> deltas;
    for (int n = 0; n < kClients; ++n) {
      if (!ref.tau.contains(n)) ref.tau[n] = t + 1;  // enrolled at 0
      if (rng.Uniform(0, 1) > 0.35) continue;
      // The client's base is what the coordinator would serve: the reference's w_n.
      const std::optional<int64_t> version = aggregator->ClientBaseVersion(n);
      ASSERT_EQ(version.has_value(), ref.base.contains(n)) << "client " << n << " round " << t;
      if (version.has_value()) {
        std::shared_ptr<const std::vector<float>> served = aggregator->BaseValues(*version);
        ASSERT_NE(served, nullptr);
        for (int64_t i = 0; i < kSize; ++i) {
          ASSERT_NEAR((*served)[i], ref.base[n][i], 1e-5 * (1 + std::abs(ref.base[n][i])));
        }
      }
      const double scale = std::pow(10.0, rng.Uniform(-3.5, -1.0));
      std::vector<float> delta(kSize);
      for (float& v : delta) v = static_cast<float>(rng.Normal(0.0, scale));
      const double weight = aggregator->rule().ClientWeight(records[n], t);
      ASSERT_EQ(weight, static_cast<double>(ref.tau[n])) << "client " << n << " round " << t;
      ASSERT_TRUE(aggregator->Fold(n, delta, weight).ok());
      deltas[n] = std::vector<double>(delta.begin(), delta.end());
      ASSERT_TRUE(FedAuParticipate(records[n].fedau, t, kFedAuNoCutoff).ok());
    }
    const int64_t m = static_cast<int64_t>(deltas.size());
    ASSERT_TRUE(aggregator->FinishRound(m, kClients, absl::MakeSpan(params)).ok());
    (ref.Round(deltas) ? clipped_rounds : unclipped_rounds) += m > 0 ? 1 : 0;
    for (const auto& [n, d] : deltas) ref.tau[n] = 0;
    for (int64_t i = 0; i < kSize; ++i) {
      ASSERT_NEAR(params[i], ref.x[i], 1e-5 * (1 + std::abs(ref.x[i]))) << "round " << t;
    }
    for (const auto& [n, d] : deltas) {
      EXPECT_EQ(aggregator->ClientBaseVersion(n), t + 1);
      EXPECT_EQ(*aggregator->BaseValues(t + 1), params);
    }
  }
  EXPECT_GT(clipped_rounds, 3);
  EXPECT_GT(unclipped_rounds, 3);
}

// §2.8's vector: taking part in rounds 2, 4, 5 and 9 gives echo factors 3, 2, 1 and 4 (FedAU's
// K = ∞ intervals).
TEST(FedAweTest, EchoFactorsAreTheRoundsSinceTheLastParticipation) {
  auto rule = *CreateAggregationRule(FedAwe(1.0, 0.5));
  ClientRecord record;
  record.fedau = FedAuEnrol(0);
  const std::map<int64_t, double> expected = {{2, 3}, {4, 2}, {5, 1}, {9, 4}};
  for (const auto& [round, tau] : expected) {
    EXPECT_EQ(rule->ClientWeight(record, round), tau) << "round " << round;
    ASSERT_TRUE(FedAuParticipate(record.fedau, round, kFedAuNoCutoff).ok());
  }
}

// Everyone takes part every round: τ = 1 and every base is x^t, so FedAWE is FedAvg over the
// participants as long as the mean delta is inside the clip radius, and the mean delta scaled to
// the radius when it is not.
TEST(FedAweTest, UnderFullParticipationIsFedAvgWithTheMeanDeltaClipped) {
  base::Rng rng(5);
  auto awe = ModuleAggregator::Create(FedAwe(1.0, 0.5), kSize, nullptr);
  auto avg = ModuleAggregator::Create({.name = "average_participating"}, kSize, nullptr);
  std::vector<float> x_awe(kSize), x_avg;
  for (float& v : x_awe) v = static_cast<float>(rng.Normal(0.0, 1.0));
  x_avg = x_awe;
  std::vector<ClientRecord> records(4);
  for (ClientRecord& r : records) r.fedau = FedAuEnrol(0);
  for (int64_t t = 0; t < 6; ++t) {
    // Small deltas (mean norm ≈ 0.01) except in round 4 (≈ 3: clipped to 0.5).
    const double scale = t == 4 ? 0.2 : 1e-3;
    awe->BeginRound(t);
    avg->BeginRound(t);
    std::vector<double> mean(kSize, 0.0);
    for (ClientId n = 0; n < 4; ++n) {
      std::vector<float> d(kSize);
      for (float& v : d) v = static_cast<float>(rng.Normal(0.0, scale));
      for (int64_t i = 0; i < kSize; ++i) mean[i] += d[i] / 4.0;
      ASSERT_EQ(awe->rule().ClientWeight(records[n], t), 1.0);
      ASSERT_TRUE(awe->Fold(n, d, 1.0).ok());
      ASSERT_TRUE(avg->Fold(n, d, 1.0).ok());
      ASSERT_TRUE(FedAuParticipate(records[n].fedau, t, kFedAuNoCutoff).ok());
    }
    double norm = 0;
    for (double v : mean) norm += v * v;
    norm = std::sqrt(norm);
    const std::vector<float> before = x_awe;
    ASSERT_TRUE(awe->FinishRound(4, 4, absl::MakeSpan(x_awe)).ok());
    if (norm <= 0.5) {
      ASSERT_TRUE(avg->FinishRound(4, 4, absl::MakeSpan(x_avg)).ok());
      for (int64_t i = 0; i < kSize; ++i) ASSERT_NEAR(x_awe[i], x_avg[i], 1e-6) << "round " << t;
    } else {
      ASSERT_EQ(t, 4);
      for (int64_t i = 0; i < kSize; ++i) {
        ASSERT_NEAR(x_awe[i], before[i] + 0.5 * mean[i] / norm, 1e-6) << i;
      }
      x_avg = x_awe;
      avg = ModuleAggregator::Create({.name = "average_participating"}, kSize, nullptr);
      for (int64_t r = 0; r <= t; ++r) avg->BeginRound(r);
    }
  }
}

// The bases survive an export and import: a fresh aggregator serves and folds the same ones,
// and the next round closes bit-identically. Bad memory is refused and changes nothing.
TEST(FedAweTest, MemoryRoundTripsAndBadMemoryIsRefused) {
  base::Rng rng(3);
  auto a = ModuleAggregator::Create(FedAwe(1.0, 0.5), kSize, nullptr);
  std::vector<float> x(kSize);
  for (float& v : x) v = static_cast<float>(rng.Normal(0.0, 1.0));
  auto fold_round = [&](ModuleAggregator& agg, int64_t t, std::vector<ClientId> clients,
                        std::vector<float>& params, uint64_t seed) {
    base::Rng r(seed);
    agg.BeginRound(t);
    for (ClientId n : clients) {
      std::vector<float> d(kSize);
      for (float& v : d) v = static_cast<float>(r.Normal(0.0, 0.01));
      ASSERT_TRUE(agg.Fold(n, d, 1.0 + static_cast<double>(n)).ok());
    }
    ASSERT_TRUE(
        agg.FinishRound(static_cast<int64_t>(clients.size()), 5, absl::MakeSpan(params)).ok());
  };
  fold_round(*a, 0, {1, 2}, x, 10);
  fold_round(*a, 1, {3}, x, 11);
  const ClientVectors memory = a->ExportMemory();
  ASSERT_EQ(memory.size(), 3u);
  EXPECT_EQ(memory[0].second.size(), static_cast<size_t>(kSize + 2));

  auto b = ModuleAggregator::Create(FedAwe(1.0, 0.5), kSize, nullptr);
  for (int64_t r = 0; r < 2; ++r) b->BeginRound(r);
  ASSERT_TRUE(b->ImportMemory(memory).ok());
  for (ClientId n : {1, 2, 3, 4}) EXPECT_EQ(b->ClientBaseVersion(n), a->ClientBaseVersion(n));
  EXPECT_EQ(*b->BaseValues(1), *a->BaseValues(1));
  std::vector<float> y = x;
  fold_round(*a, 2, {1, 3, 4}, x, 12);
  fold_round(*b, 2, {1, 3, 4}, y, 12);
  EXPECT_EQ(x, y);
  EXPECT_EQ(a->ExportMemory(), b->ExportMemory());

  auto c = ModuleAggregator::Create(FedAwe(1.0, 0.5), kSize, nullptr);
  ASSERT_TRUE(c->ImportMemory(memory).ok());
  ClientVectors bad = memory;
  bad[0].second.pop_back();
  EXPECT_THAT(c->ImportMemory(bad).message(), HasSubstr("expected"));
  bad = memory;
  bad[1].second[kSize + 1] = 0.5f;
  EXPECT_THAT(c->ImportMemory(bad).message(), HasSubstr("two integers"));
  bad = memory;
  bad[1].second[0] += 1.0f;  // clients 1 and 2 share version 1
  EXPECT_THAT(c->ImportMemory(bad).message(), HasSubstr("other values for base version 1"));
  bad = memory;
  bad[2].second[3] = NAN;
  EXPECT_THAT(c->ImportMemory(bad).message(), HasSubstr("not finite"));
  EXPECT_EQ(c->ExportMemory(), memory);  // unchanged by every refusal
}

TEST(FedAweTest, OptionsAreChecked) {
  EXPECT_TRUE(CreateAggregationRule({.name = "fedawe"}).ok());
  EXPECT_TRUE(CreateAggregationRule(FedAwe(1.0, 0.0)).ok());  // no clip
  EXPECT_THAT(CreateAggregationRule(FedAwe(1.0, -1.0)).status().message(),
              HasSubstr("clip_radius must be finite and >= 0"));
  EXPECT_THAT(CreateAggregationRule({.name = "fedawe", .options = "radius: 1"}).status().message(),
              HasSubstr("radius"));
}

// In the coordinator: a client that took part is listed and served its base, which is not the
// current module once others moved it; an update trained from anything else is refused naming
// the base; a fresh client trains from the current module; a restart keeps the bases.
class FedAweCoordinatorTest : public ::testing::Test {
 protected:
  static std::vector<StoredModule> Modules() {
    StoredModule module;
    module.spec = {"m", ModuleRole::kHead, {}};
    module.values.Add("w", {3, 3}, true);
    for (int i = 0; i < 9; ++i) module.values.flat_values()[i] = 0.1f * static_cast<float>(i);
    std::vector<StoredModule> modules;
    modules.push_back(std::move(module));
    return modules;
  }
  static CoordinatorOptions Options() {
    CoordinatorOptions options;
    options.aggregator = FedAwe(1.0, 0.5);
    return options;
  }
  // Submits a delta of `fill` trained from `version` for the open round.
  static absl::StatusOr<SubmitResult> Submit(Coordinator& c, ClientId client, int64_t version,
                                             float fill) {
    std::vector<float> values(9, fill);
    UpdateSubmission update;
    update.client = client;
    update.round = c.current_round();
    update.num_samples = 4;
    update.local_steps = 1;
    update.modules.push_back({"m", version, {{"w", {3, 3}}}, absl::MakeSpan(values)});
    return c.Submit(update);
  }
  void Close(Coordinator& c) {
    clock_.Advance(absl::Seconds(31));
    ASSERT_TRUE(c.Tick().ok());
  }
  static int64_t ListedVersion(Coordinator& c, ClientId client) {
    absl::StatusOr<WorkAssignment> work = c.GetWork(client, {});
    EXPECT_TRUE(work.ok()) << work.status();
    return work.ok() ? work->modules.at(0).version : -1;
  }
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  MemoryStateStore store_;
};

TEST_F(FedAweCoordinatorTest, ClientsAreListedAndServedTheirOwnBases) {
  auto created = Coordinator::Create(Options(), clock_, &store_, Modules());
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Coordinator> c = *std::move(created);
  for (ClientId id : {1, 2, 3}) ASSERT_TRUE(c->Enroll(id).ok());
  ASSERT_TRUE(Submit(*c, 1, 0, 0.01f).ok());  // round 0: client 1
  Close(*c);
  ASSERT_TRUE(Submit(*c, 2, 1, 0.02f).ok());  // round 1: client 2, fresh, from the current (1)
  Close(*c);
  EXPECT_EQ(c->Modules()[0].version, 2);
  EXPECT_EQ(ListedVersion(*c, 1), 1);  // its base: the module after round 0
  EXPECT_EQ(ListedVersion(*c, 2), 2);
  EXPECT_EQ(ListedVersion(*c, 3), 2);  // never took part: the current module
  absl::StatusOr<ModuleSnapshot> base = c->GetModule("m", 1);
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->version, 1);
  EXPECT_NE(base->values->flat_values(), c->Modules()[0].values->flat_values());
  EXPECT_EQ(c->GetModule("m", 0).status().code(), absl::StatusCode::kNotFound);  // nobody's base

  absl::StatusOr<SubmitResult> wrong = Submit(*c, 1, 2, 0.01f);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(wrong.status().message(), HasSubstr("trains from its base, version 1"));
  absl::StatusOr<SubmitResult> right = Submit(*c, 1, 1, 0.01f);
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(right->weight, 2.0);  // τ: rounds 1 and 2 since round 0
  ASSERT_TRUE(Submit(*c, 3, 2, -0.01f).ok());

  Close(*c);
  EXPECT_EQ(ListedVersion(*c, 1), 3);
  EXPECT_EQ(ListedVersion(*c, 3), 3);
  EXPECT_EQ(ListedVersion(*c, 2), 2);
}

// A close that folded something names the participants' new base, so it gives the module a new
// version even when the values did not move: a client's base is always a version the module had.
TEST_F(FedAweCoordinatorTest, AFoldingCloseVersionsTheModuleEvenIfNothingMoved) {
  std::unique_ptr<Coordinator> c = *Coordinator::Create(Options(), clock_, &store_, Modules());
  ASSERT_TRUE(c->Enroll(1).ok());
  ASSERT_TRUE(Submit(*c, 1, 0, 0.0f).ok());
  Close(*c);
  EXPECT_EQ(c->Modules()[0].version, 1);
  EXPECT_EQ(ListedVersion(*c, 1), 1);
  Close(*c);  // nobody: nothing moves, and neither does the version
  EXPECT_EQ(c->Modules()[0].version, 1);
}

// A crash in a round with acknowledged updates from stale bases, and a restart from the store,
// close the round exactly as an uninterrupted run does: the bases are in the store.
TEST_F(FedAweCoordinatorTest, ARestartKeepsTheBasesAndClosesBitIdentically) {
  auto run = [&](bool crash) {
    MemoryStateStore store;
    base::ManualClock clock(absl::FromUnixSeconds(1000));
    std::unique_ptr<Coordinator> c = *Coordinator::Create(Options(), clock, &store, Modules());
    for (ClientId id : {1, 2, 3}) EXPECT_TRUE(c->Enroll(id).ok());
    // Client n takes part in the rounds where (round + n) % 3 != 0.
    for (int64_t round = 0; round < 6; ++round) {
      for (ClientId n : {1, 2, 3}) {
        if ((round + static_cast<int64_t>(n)) % 3 == 0) continue;
        const int64_t version = ListedVersion(*c, n);
        EXPECT_TRUE(Submit(*c, n, version, 0.003f * static_cast<float>(n) - 0.005f).ok());
      }
      if (crash && round == 4) {
        c.reset();
        absl::StatusOr<StoredState> state = store.Load();
        EXPECT_TRUE(state.ok());
        c = *Coordinator::Recover(Options(), clock, &store, *std::move(state));
        EXPECT_EQ(c->Status().accepted, 2);
      }
      clock.Advance(absl::Seconds(31));
      EXPECT_TRUE(c->Tick().ok());
    }
    std::vector<int64_t> bases;
    for (ClientId n : {1, 2, 3}) bases.push_back(ListedVersion(*c, n));
    const auto& v = c->Modules()[0].values->flat_values();
    return std::make_pair(std::vector<float>(v.data(), v.data() + v.size()), bases);
  };
  const auto uninterrupted = run(false);
  EXPECT_EQ(run(true), uninterrupted);
  EXPECT_EQ(uninterrupted.second, (std::vector<int64_t>{5, 6, 6}));  // 1 missed round 5
}

TEST_F(FedAweCoordinatorTest, AsynchronousRoundsAreRefused) {
  CoordinatorOptions options = Options();
  options.round.name = "fedbuff";
  options.round.options = "buffer_size: 2 max_staleness: 4";
  absl::Status status = options.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("aggregator.name fedawe"));
  EXPECT_THAT(status.message(), HasSubstr("'fedbuff' is asynchronous"));
}

}  // namespace
}  // namespace fedcl::fl
