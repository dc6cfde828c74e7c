#include "core/fl/aggregator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/base/random.h"
#include "core/fl/fedau_estimator.h"
#include "core/fl/fixed_point_accumulator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {
namespace {

// Three chunks, the last one partial.
constexpr int64_t kSize = 2 * FixedPointAccumulator::kChunkSize + 77;
constexpr int kClients = 10;

// The rules of algorithms.md §1.7 (fedadam has its own test, rules/fedadam_test.cc), and the
// exact sum the coordinator folds class statistics with.
const std::vector<std::string> kAllKinds = {
    "adaptive", "known_prob", "average_participating", "average_all", "fedvarp", "mifa", "sum"};

struct Update {
  ClientId client;
  std::vector<float> delta;
  double weight;
};

struct RoundPlan {
  int64_t round;
  std::vector<Update> updates;
  int64_t participants;  // |S_t|; sometimes one more than the updates (a client that sent no
                         // delta for this module)
  int64_t enrolled;
};

// The reference runs' γ per rule (§1.8), so γ != 1 is exercised.
RuleConfig OptionsFor(const std::string& kind) {
  RuleConfig options;
  options.name = kind;
  options.global_learning_rate = kind == "average_participating" ? 1.78
                                 : kind == "average_all"         ? 10.0
                                                                 : 1.0;
  return options;
}

// Random rounds: Bernoulli(0.4) participation (none in `empty_rounds`), Gaussian deltas with a
// per-update scale, weights as the coordinator would supply them.
std::vector<RoundPlan> MakePlan(const std::string& kind, int rounds, uint64_t seed,
                                std::set<int> empty_rounds = {2}) {
  base::Rng rng(seed);
  std::vector<FedAuClientState> fedau(kClients, FedAuEnrol(0));
  std::vector<double> probability(kClients);
  for (double& p : probability) p = rng.Uniform(0.05, 1.0);
  std::vector<RoundPlan> plans;
  for (int t = 0; t < rounds; ++t) {
    RoundPlan plan{t, {}, 0, kClients};
    for (int n = 0; n < kClients; ++n) {
      if (empty_rounds.contains(t) || !rng.Bernoulli(0.4)) continue;
      Update u{static_cast<ClientId>(100 + n), std::vector<float>(kSize), 1.0};
      const double scale = std::pow(10.0, rng.Uniform(-3, 0));
      for (float& v : u.delta) v = static_cast<float>(rng.Normal(0, scale));
      if (kind == "adaptive") {
        u.weight = *FedAuParticipate(fedau[n], t, kFedAuNoCutoff);
      } else if (kind == "known_prob") {
        u.weight = 1.0 / probability[n];
      }
      plan.updates.push_back(std::move(u));
    }
    plan.participants = static_cast<int64_t>(plan.updates.size());
    if (!plan.updates.empty() && rng.Bernoulli(0.3)) ++plan.participants;
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::vector<float> InitialParams(uint64_t seed) {
  base::Rng rng(seed);
  std::vector<float> x(kSize);
  for (float& v : x) v = static_cast<float>(rng.Normal(0, 0.1));
  return x;
}

// §1.7 as a naive double-precision loop.
class Reference {
 public:
  explicit Reference(const RuleConfig& options) : options_(options) {}

  void Round(const RoundPlan& plan, std::vector<float>& x) {
    const double gamma = options_.global_learning_rate;
    const double s = static_cast<double>(plan.participants);
    const double n = static_cast<double>(plan.enrolled);
    std::vector<double> step(kSize, 0.0);
    const std::string& kind = options_.name;
    if (kind == "adaptive" || kind == "known_prob" || kind == "average_all" ||
        kind == "average_participating" || kind == "sum") {
      if (plan.updates.empty()) return;
      const double divisor = kind == "average_participating" ? s : kind == "sum" ? 1.0 : n;
      for (const Update& u : plan.updates) {
        for (int64_t i = 0; i < kSize; ++i) step[i] += u.weight * u.delta[i] / divisor;
      }
    } else if (kind == "fedvarp") {
      if (plan.participants == 0) return;
      for (const Update& u : plan.updates) {
        const std::vector<float>* y = Find(u.client);
        for (int64_t i = 0; i < kSize; ++i) step[i] += (u.delta[i] - (y ? (*y)[i] : 0.0)) / s;
      }
      for (const auto& [client, y] : y_) {
        for (int64_t i = 0; i < kSize; ++i) step[i] += y[i] / n;
      }
      for (const Update& u : plan.updates) y_[u.client] = u.delta;
    } else if (kind == "mifa") {
      for (const Update& u : plan.updates) y_[u.client] = u.delta;
      if (y_.empty()) return;
      for (const auto& [client, y] : y_) {
        for (int64_t i = 0; i < kSize; ++i) step[i] += y[i] / n;
      }
    }
    for (int64_t i = 0; i < kSize; ++i) {
      x[i] = static_cast<float>(static_cast<double>(x[i]) + gamma * step[i]);
    }
  }

 private:
  const std::vector<float>* Find(ClientId client) const {
    auto it = y_.find(client);
    return it == y_.end() ? nullptr : &it->second;
  }

  RuleConfig options_;
  std::map<ClientId, std::vector<float>> y_;
};

enum class Arrival { kInOrder, kReversed, kShuffledFromFourThreads };

void RunRound(ModuleAggregator& aggregator, const RoundPlan& plan, std::vector<float>& x,
              Arrival arrival = Arrival::kInOrder, uint64_t seed = 0) {
  aggregator.BeginRound(plan.round);
  std::vector<const Update*> updates;
  for (const Update& u : plan.updates) updates.push_back(&u);
  if (arrival == Arrival::kReversed) std::reverse(updates.begin(), updates.end());
  if (arrival == Arrival::kShuffledFromFourThreads) {
    base::Rng rng(seed + plan.round);
    rng.Shuffle(updates);
    std::vector<std::thread> threads;
    threads.reserve(4);
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (size_t k = t; k < updates.size(); k += 4) {
          EXPECT_TRUE(
              aggregator.Fold(updates[k]->client, updates[k]->delta, updates[k]->weight).ok());
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  } else {
    for (const Update* u : updates)
      ASSERT_TRUE(aggregator.Fold(u->client, u->delta, u->weight).ok());
  }
  ASSERT_TRUE(aggregator.FinishRound(plan.participants, plan.enrolled, absl::MakeSpan(x)).ok());
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  // Bit patterns, not values: -0 vs +0 or a different NaN would be a difference.
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;  // NOLINT(bugprone-*)
}

TEST(RuleRegistryTest, EveryBuiltInRuleIsRegisteredAndConfigsAreChecked) {
  for (const std::string& kind : kAllKinds) {
    absl::StatusOr<std::shared_ptr<const AggregationRule>> rule =
        CreateAggregationRule(OptionsFor(kind));
    ASSERT_TRUE(rule.ok()) << kind;
    EXPECT_EQ((*rule)->name(), kind);
    EXPECT_EQ((*rule)->weighted(), kind == "adaptive" || kind == "known_prob") << kind;
    EXPECT_EQ((*rule)->keeps_client_memory(), kind == "fedvarp" || kind == "mifa") << kind;
  }
  EXPECT_THAT(RegisteredRuleNames(), ::testing::Contains("fedadam"));
  absl::Status unknown = CreateAggregationRule({.name = "fedavg"}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(unknown));
  EXPECT_THAT(unknown.message(), ::testing::HasSubstr("registered: adaptive, average_all"));
  EXPECT_TRUE(CreateAggregationRule(RuleConfig{}).ok());
  EXPECT_FALSE(CreateAggregationRule({.global_learning_rate = 0.0}).ok());
  EXPECT_FALSE(CreateAggregationRule({.global_learning_rate = NAN}).ok());
  EXPECT_FALSE(CreateAggregationRule({.fedau_cutoff = -1}).ok());
  EXPECT_TRUE(
      absl::IsInvalidArgument(CreateAggregationRule({.name = "mifa", .options = "k: 1"}).status()));
  // The sum adds statistics as they are: a server learning rate would scale counts.
  absl::Status scaled_sum =
      CreateAggregationRule({.name = "sum", .global_learning_rate = 0.5}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(scaled_sum));
  EXPECT_THAT(scaled_sum.message(), ::testing::HasSubstr("global_learning_rate must be 1"));
}

TEST(ModuleAggregatorTest, EachKindMatchesNaiveDoubleLoop) {
  tbb::task_arena arena(2);
  for (const std::string& kind : kAllKinds) {
    SCOPED_TRACE(kind);
    const RuleConfig options = OptionsFor(kind);
    auto aggregator = ModuleAggregator::Create(options, kSize, &arena);
    Reference reference(options);
    std::vector<float> x = InitialParams(1);
    int64_t off_by_one_ulp = 0;
    for (const RoundPlan& plan : MakePlan(kind, 6, 2)) {
      std::vector<float> expected = x;
      reference.Round(plan, expected);
      RunRound(*aggregator, plan, x);
      // Each fixed-point term is off by at most half a unit (2^-37); an update has at most two
      // terms (FedVARP's Δ_n − y_n) and the stored Σ y_j one per client; the sums are then
      // divided by at least 1. Both sides round to float once, so they differ by at most that
      // slack plus one ulp, and rarely at all.
      const double slack = options.global_learning_rate * std::ldexp(1.0, -37) *
                           static_cast<double>(2 * plan.updates.size() + kClients);
      for (int64_t i = 0; i < kSize; ++i) {
        const float ulp = std::nextafter(std::fabs(expected[i]), INFINITY) - std::fabs(expected[i]);
        ASSERT_LE(std::fabs(x[i] - expected[i]), ulp + slack)
            << "round " << plan.round << " element " << i;
        off_by_one_ulp += x[i] != expected[i];
      }
      x = expected;  // next round from the same start
    }
    EXPECT_LT(off_by_one_ulp, 6 * kSize / 50);  // under 2% of the elements
  }
}

TEST(ModuleAggregatorTest, ResultDoesNotDependOnArrivalOrderOrThreadCount) {
  for (const std::string& kind : kAllKinds) {
    SCOPED_TRACE(kind);
    const std::vector<RoundPlan> plans = MakePlan(kind, 5, 3);
    std::vector<float> baseline = InitialParams(4);
    auto sequential = ModuleAggregator::Create(OptionsFor(kind), kSize, nullptr);
    std::vector<std::vector<float>> per_round;
    for (const RoundPlan& plan : plans) {
      RunRound(*sequential, plan, baseline);
      per_round.push_back(baseline);
    }
    for (int threads : {1, 2, 4}) {
      tbb::task_arena arena(threads);
      for (Arrival arrival : {Arrival::kReversed, Arrival::kShuffledFromFourThreads}) {
        auto aggregator = ModuleAggregator::Create(OptionsFor(kind), kSize, &arena);
        std::vector<float> x = InitialParams(4);
        for (size_t r = 0; r < plans.size(); ++r) {
          RunRound(*aggregator, plans[r], x, arrival, 10 * threads);
          ASSERT_TRUE(SameBits(x, per_round[r])) << threads << " threads, round " << r;
        }
        EXPECT_EQ(aggregator->ExportMemory(), sequential->ExportMemory());
      }
    }
  }
}

TEST(ModuleAggregatorTest, EmptyRoundChangesNothingExceptForMifa) {
  for (const std::string& kind : kAllKinds) {
    SCOPED_TRACE(kind);
    const RuleConfig options = OptionsFor(kind);
    auto aggregator = ModuleAggregator::Create(options, kSize, nullptr);
    Reference reference(options);
    // Round 0 has updates (so FedVARP and MIFA have stored vectors); rounds 1 and 2 are empty.
    std::vector<RoundPlan> plans = MakePlan(kind, 3, 5, /*empty_rounds=*/{1, 2});
    ASSERT_FALSE(plans[0].updates.empty());
    std::vector<float> x = InitialParams(6);
    RunRound(*aggregator, plans[0], x);
    std::vector<float> expected = x;
    reference.Round(plans[0], expected);  // primes the reference's memory
    for (int r : {1, 2}) {
      const std::vector<float> before = x;
      RunRound(*aggregator, plans[r], x);
      if (kind != "mifa") {
        EXPECT_TRUE(SameBits(x, before)) << "round " << r;
        continue;
      }
      // MIFA applies γ/N·Σ y_j even with nobody taking part.
      expected = before;
      reference.Round(plans[r], expected);
      EXPECT_FALSE(SameBits(x, before));
      for (int64_t i = 0; i < kSize; ++i) {
        const float ulp = std::nextafter(std::fabs(expected[i]), INFINITY) - std::fabs(expected[i]);
        ASSERT_LE(std::fabs(x[i] - expected[i]), ulp + kClients * std::ldexp(1.0, -37)) << i;
      }
    }
  }
}

TEST(ModuleAggregatorTest, MemoryGrowsWithClientsOnlyForFedVarpAndMifa) {
  for (const std::string& kind : kAllKinds) {
    SCOPED_TRACE(kind);
    auto aggregator = ModuleAggregator::Create(OptionsFor(kind), kSize, nullptr);
    const int64_t initial = aggregator->memory_bytes();
    std::vector<float> x(kSize, 0.0f), delta(kSize, 0.5f);
    for (int t = 0; t < 4; ++t) {
      aggregator->BeginRound(t);
      for (int n = 0; n < 5; ++n) {
        ASSERT_TRUE(aggregator->Fold(5 * t + n, delta, 1.0).ok());
      }
      ASSERT_TRUE(aggregator->FinishRound(5, 20, absl::MakeSpan(x)).ok());
    }
    const int64_t after = aggregator->memory_bytes();
    if (kind == "fedvarp" || kind == "mifa") {
      // 20 clients, one float vector each.
      EXPECT_GE(after - initial, 20 * kSize * static_cast<int64_t>(sizeof(float)));
      EXPECT_EQ(aggregator->ExportMemory().size(), 20u);
    } else {
      EXPECT_GE(initial, kSize * 8);
      EXPECT_LT(after, initial + 4096);  // the per-round client set's table, nothing per d
      EXPECT_TRUE(aggregator->ExportMemory().empty());
    }
  }
}

TEST(ModuleAggregatorTest, ExportImportContinuesBitIdentically) {
  tbb::task_arena arena(2);
  for (const std::string kind : {"fedvarp", "mifa"}) {
    SCOPED_TRACE(kind);
    const std::vector<RoundPlan> plans = MakePlan(kind, 7, 7, /*empty_rounds=*/{4});
    auto original = ModuleAggregator::Create(OptionsFor(kind), kSize, &arena);
    std::vector<float> x = InitialParams(8);
    for (int r = 0; r < 3; ++r) RunRound(*original, plans[r], x);
    const ClientVectors exported = original->ExportMemory();
    ASSERT_FALSE(exported.empty());
    ASSERT_TRUE(std::is_sorted(exported.begin(), exported.end(),
                               [](const auto& a, const auto& b) { return a.first < b.first; }));
    // A restarted server: a fresh aggregator (no arena this time) fed the exported vectors.
    auto restarted = ModuleAggregator::Create(OptionsFor(kind), kSize, nullptr);
    ASSERT_TRUE(restarted->ImportMemory(exported).ok());
    std::vector<float> y = x;
    for (int r = 3; r < 7; ++r) {
      RunRound(*original, plans[r], x);
      RunRound(*restarted, plans[r], y, Arrival::kReversed);
      ASSERT_TRUE(SameBits(x, y)) << "round " << r;
    }
    EXPECT_EQ(original->ExportMemory(), restarted->ExportMemory());
  }
}

TEST(ModuleAggregatorTest, ImportRejectsBadMemoryAndKeepsTheOld) {
  auto adaptive = ModuleAggregator::Create(OptionsFor("adaptive"), 4, nullptr);
  EXPECT_TRUE(adaptive->ImportMemory({}).ok());
  EXPECT_EQ(adaptive->ImportMemory({{1, std::vector<float>(4)}}).code(),
            absl::StatusCode::kInvalidArgument);

  auto mifa = ModuleAggregator::Create(OptionsFor("mifa"), 4, nullptr);
  const ClientVectors good = {{1, {1, 2, 3, 4}}, {2, {0, 0, 0, 1}}};
  ASSERT_TRUE(mifa->ImportMemory(good).ok());
  EXPECT_EQ(mifa->ImportMemory({{1, {1, 2, 3}}}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mifa->ImportMemory({{1, {1, 2, 3, NAN}}}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mifa->ImportMemory({{1, {1, 2, 3, 4}}, {1, {1, 2, 3, 4}}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mifa->ExportMemory(), good);
  mifa->BeginRound(0);
  ASSERT_TRUE(mifa->Fold(3, std::vector<float>{1, 1, 1, 1}, 1.0).ok());
  EXPECT_EQ(mifa->ImportMemory(good).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ModuleAggregatorTest, RejectedFoldsLeaveTheRoundAsIfTheyNeverHappened) {
  for (const std::string& kind : kAllKinds) {
    SCOPED_TRACE(kind);
    const RuleConfig options = OptionsFor(kind);
    const std::vector<RoundPlan> plans = MakePlan(kind, 2, 9, /*empty_rounds=*/{});
    ASSERT_GE(plans[1].updates.size(), 1u);
    auto aggregator = ModuleAggregator::Create(options, kSize, nullptr);
    auto clean = ModuleAggregator::Create(options, kSize, nullptr);
    std::vector<float> x = InitialParams(10), y = x;
    RunRound(*aggregator, plans[0], x);
    RunRound(*clean, plans[0], y);

    const Update& first = plans[1].updates[0];
    EXPECT_EQ(aggregator->Fold(first.client, first.delta, first.weight).code(),
              absl::StatusCode::kFailedPrecondition);  // no round open
    aggregator->BeginRound(1);
    std::vector<float> bad = first.delta;
    bad[kSize - 1] = NAN;
    EXPECT_EQ(aggregator->Fold(first.client, bad, first.weight).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(aggregator->Fold(first.client, std::vector<float>(kSize - 1), first.weight).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(aggregator->Fold(first.client, first.delta, 0.0).code(),
              absl::StatusCode::kInvalidArgument);
    if (!(*CreateAggregationRule(OptionsFor(kind)))->weighted()) {
      EXPECT_EQ(aggregator->Fold(first.client, first.delta, 2.0).code(),
                absl::StatusCode::kInvalidArgument);
    }
    // |Δ| = 1e8 passes the fixed-point capacity (6.7e7) in the last chunk only.
    std::vector<float> huge = first.delta;
    huge[kSize - 1] = 1e8f;
    EXPECT_EQ(aggregator->Fold(first.client, huge, first.weight).code(),
              absl::StatusCode::kOutOfRange);
    for (const Update& u : plans[1].updates) {
      ASSERT_TRUE(aggregator->Fold(u.client, u.delta, u.weight).ok());
    }
    EXPECT_EQ(aggregator->Fold(first.client, first.delta, first.weight).code(),
              absl::StatusCode::kAlreadyExists);
    // Too few participants for the folds: refused, the round stays open.
    EXPECT_EQ(aggregator->FinishRound(0, kClients, absl::MakeSpan(x)).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(
        aggregator
            ->FinishRound(plans[1].participants, kClients, absl::MakeSpan(x.data(), kSize - 1))
            .code(),
        absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(aggregator->FinishRound(plans[1].participants, kClients, absl::MakeSpan(x)).ok());
    RunRound(*clean, plans[1], y);
    EXPECT_TRUE(SameBits(x, y));
    EXPECT_EQ(aggregator->ExportMemory(), clean->ExportMemory());
    EXPECT_EQ(aggregator->FinishRound(0, kClients, absl::MakeSpan(x)).code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

TEST(ModuleAggregatorTest, RuleThatDividesByNRefusesNZero) {
  auto aggregator = ModuleAggregator::Create(OptionsFor("adaptive"), 4, nullptr);
  std::vector<float> x(4, 0.0f);
  aggregator->BeginRound(0);
  ASSERT_TRUE(aggregator->Fold(1, std::vector<float>{1, 1, 1, 1}, 1.0).ok());
  EXPECT_EQ(aggregator->FinishRound(1, 0, absl::MakeSpan(x)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(aggregator->FinishRound(1, 2, absl::MakeSpan(x)).ok());
  EXPECT_EQ(x, (std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f}));
}

TEST(ModuleAggregatorTest, ForgottenClientIsAsIfNeverStored) {
  for (const std::string kind : {"fedvarp", "mifa"}) {
    SCOPED_TRACE(kind);
    const std::vector<RoundPlan> plans = MakePlan(kind, 4, 11, /*empty_rounds=*/{});
    auto aggregator = ModuleAggregator::Create(OptionsFor(kind), kSize, nullptr);
    std::vector<float> x = InitialParams(12);
    for (int r = 0; r < 3; ++r) RunRound(*aggregator, plans[r], x);
    ClientVectors memory = aggregator->ExportMemory();
    ASSERT_GE(memory.size(), 2u);
    const ClientId gone = memory[1].first;
    aggregator->BeginRound(3);
    ASSERT_TRUE(aggregator->Fold(memory[0].first, memory[0].second, 1.0).ok());
    EXPECT_EQ(aggregator->ForgetClient(memory[0].first).code(),
              absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE(aggregator->ForgetClient(gone).ok());
    ASSERT_TRUE(aggregator->FinishRound(1, kClients, absl::MakeSpan(x)).ok());

    memory.erase(memory.begin() + 1);
    auto fresh = ModuleAggregator::Create(OptionsFor(kind), kSize, nullptr);
    ASSERT_TRUE(fresh->ImportMemory(memory).ok());
    EXPECT_EQ(aggregator->ExportMemory(), fresh->ExportMemory());
    std::vector<float> y = x;
    RoundPlan next = plans[3];
    next.round = 4;
    RunRound(*aggregator, next, x);
    RunRound(*fresh, next, y);
    EXPECT_TRUE(SameBits(x, y));
  }
}

}  // namespace
}  // namespace fedcl::fl
