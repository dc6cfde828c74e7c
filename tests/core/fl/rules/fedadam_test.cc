#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/base/random.h"
#include "core/fl/aggregator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSize = 3000;

struct Round {
  std::vector<std::vector<float>> deltas;  // one per participant (clients 0, 1, ...)
};

// Rounds of random deltas of varied scale, with one round nobody takes part in.
std::vector<Round> MakeRounds(uint64_t seed, int rounds) {
  base::Rng rng(seed);
  std::vector<Round> out(rounds);
  for (int t = 0; t < rounds; ++t) {
    if (t == 2) continue;  // empty
    const int participants = 1 + rng.UniformInt(5);
    for (int n = 0; n < participants; ++n) {
      std::vector<float> d(kSize);
      const double scale = std::pow(10.0, rng.Uniform(-3, -1));
      for (float& v : d) v = static_cast<float>(rng.Normal(0.0, scale));
      out[t].deltas.push_back(std::move(d));
    }
  }
  return out;
}

// Reddi et al., Algorithm 2, in double precision, written from the paper's update rule.
std::vector<double> Reference(const std::vector<Round>& rounds, std::vector<double> x,
                              const std::string& variant, double gamma, double b1, double b2,
                              double tau) {
  std::vector<double> m(x.size(), 0.0), v(x.size(), 0.0);
  for (const Round& round : rounds) {
    if (round.deltas.empty()) continue;
    for (size_t i = 0; i < x.size(); ++i) {
      double g = 0;
      for (const auto& d : round.deltas) g += d[i];
      g /= static_cast<double>(round.deltas.size());
      m[i] = b1 * m[i] + (1 - b1) * g;
      if (variant == "adam") v[i] = b2 * v[i] + (1 - b2) * g * g;
      if (variant == "yogi") v[i] -= (1 - b2) * g * g * (v[i] > g * g ? 1 : v[i] < g * g ? -1 : 0);
      if (variant == "adagrad") v[i] += g * g;
      x[i] += gamma * m[i] / (std::sqrt(v[i]) + tau);
    }
  }
  return x;
}

std::unique_ptr<ModuleAggregator> Make(const std::string& options, double gamma,
                                       tbb::task_arena* arena) {
  return ModuleAggregator::Create(
      RuleConfig{.name = "fedadam", .global_learning_rate = gamma, .options = options}, kSize,
      arena);
}

// Runs `rounds` through `aggregator` from round `first`; participants fold in `order`.
void RunRounds(ModuleAggregator& aggregator, const std::vector<Round>& rounds, int64_t first,
               std::vector<float>& params, bool reverse = false) {
  for (size_t t = 0; t < rounds.size(); ++t) {
    aggregator.BeginRound(first + static_cast<int64_t>(t));
    const auto& deltas = rounds[t].deltas;
    for (size_t k = 0; k < deltas.size(); ++k) {
      const size_t n = reverse ? deltas.size() - 1 - k : k;
      ASSERT_TRUE(aggregator.Fold(static_cast<ClientId>(n), deltas[n], 1.0).ok());
    }
    ASSERT_TRUE(
        aggregator.FinishRound(static_cast<int64_t>(deltas.size()), 100, absl::MakeSpan(params))
            .ok());
  }
}

std::vector<float> RandomParams(uint64_t seed) {
  base::Rng rng(seed);
  std::vector<float> x(kSize);
  for (float& v : x) v = static_cast<float>(rng.Normal(0.0, 0.5));
  return x;
}

TEST(FedAdamRuleTest, EveryVariantFollowsReddiEtAlAlgorithmTwo) {
  const std::vector<Round> rounds = MakeRounds(7, 8);
  const std::vector<float> x0 = RandomParams(8);
  struct Case {
    std::string variant;
    double gamma, b1, b2, tau;
  };
  for (const Case& c : {Case{"adam", 0.03, 0.9, 0.99, 1e-3}, Case{"yogi", 0.01, 0.8, 0.95, 1e-2},
                        Case{"adagrad", 0.1, 0.5, 0.9, 1e-4}}) {
    tbb::task_arena arena(2);
    auto aggregator = Make(
        absl::StrCat("variant: ", c.variant, " beta1: ", c.b1, " beta2: ", c.b2, " tau: ", c.tau),
        c.gamma, &arena);
    std::vector<float> params = x0;
    RunRounds(*aggregator, rounds, 0, params);
    const std::vector<double> expected = Reference(
        rounds, std::vector<double>(x0.begin(), x0.end()), c.variant, c.gamma, c.b1, c.b2, c.tau);
    double worst = 0;
    for (int64_t i = 0; i < kSize; ++i) {
      worst = std::max(worst, std::abs(params[i] - expected[i]) / (1e-3 + std::abs(expected[i])));
    }
    // m and v are kept in float between rounds (they are persisted as float): a few float ulps.
    EXPECT_LT(worst, 2e-5) << c.variant;
    EXPECT_NE(params, x0) << c.variant;
  }
}

TEST(FedAdamRuleTest, TheResultDoesNotDependOnArrivalOrderOrThreads) {
  const std::vector<Round> rounds = MakeRounds(11, 5);
  tbb::task_arena one(1), four(4);
  auto a = Make("", 0.05, &one);
  auto b = Make("", 0.05, &four);
  std::vector<float> pa = RandomParams(3), pb = pa;
  RunRounds(*a, rounds, 0, pa);
  RunRounds(*b, rounds, 0, pb, /*reverse=*/true);
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), sizeof(float) * kSize), 0);
}

TEST(FedAdamRuleTest, ExportedMomentsContinueBitIdenticallyInAFreshAggregator) {
  const std::vector<Round> rounds = MakeRounds(13, 6);
  const std::vector<Round> first(rounds.begin(), rounds.begin() + 3);
  const std::vector<Round> rest(rounds.begin() + 3, rounds.end());
  auto whole = Make("beta1: 0.7", 0.02, nullptr);
  std::vector<float> p_whole = RandomParams(4);
  std::vector<float> p_split = p_whole;
  RunRounds(*whole, rounds, 0, p_whole);

  auto before = Make("beta1: 0.7", 0.02, nullptr);
  RunRounds(*before, first, 0, p_split);
  const ClientVectors memory = before->ExportMemory();
  ASSERT_EQ(memory.size(), 2u);
  auto after = Make("beta1: 0.7", 0.02, nullptr);
  ASSERT_TRUE(after->ImportMemory(memory).ok());
  RunRounds(*after, rest, 3, p_split);
  EXPECT_EQ(std::memcmp(p_whole.data(), p_split.data(), sizeof(float) * kSize), 0);
}

TEST(FedAdamRuleTest, ARoundWithoutParticipantsChangesNothing) {
  auto aggregator = Make("", 0.1, nullptr);
  std::vector<float> params = RandomParams(5);
  RunRounds(*aggregator, MakeRounds(17, 2), 0, params);
  const std::vector<float> before = params;
  const ClientVectors memory = aggregator->ExportMemory();
  aggregator->BeginRound(2);
  ASSERT_TRUE(aggregator->FinishRound(0, 100, absl::MakeSpan(params)).ok());
  EXPECT_EQ(params, before);
  EXPECT_EQ(aggregator->ExportMemory(), memory);
}

TEST(FedAdamRuleTest, BadOptionsAndBadMemoryAreRefusedNamingTheField) {
  for (const auto& [options, field] :
       std::vector<std::pair<std::string, std::string>>{{"beta1: 1", "beta1"},
                                                        {"beta2: -0.1", "beta2"},
                                                        {"tau: 0", "tau"},
                                                        {"variant: sgd", "variant"},
                                                        {"momentum: 0.9", "unknown key 'momentum'"},
                                                        {"beta1 0.9", "expected ':'"}}) {
    absl::StatusOr<std::shared_ptr<const AggregationRule>> rule =
        CreateAggregationRule({.name = "fedadam", .options = options});
    ASSERT_FALSE(rule.ok()) << options;
    EXPECT_TRUE(absl::IsInvalidArgument(rule.status())) << options;
    EXPECT_THAT(rule.status().message(), HasSubstr(field)) << options;
  }
  auto aggregator = Make("", 0.1, nullptr);
  std::vector<float> params = RandomParams(6);
  RunRounds(*aggregator, MakeRounds(19, 2), 0, params);
  const ClientVectors good = aggregator->ExportMemory();
  ClientVectors negative = good;
  negative[1].second[5] = -1.0f;
  ClientVectors short_vector = good;
  short_vector[0].second.pop_back();
  ClientVectors wrong_keys = good;
  wrong_keys[1].first = 7;
  for (const ClientVectors& bad : {negative, short_vector, wrong_keys, ClientVectors{}}) {
    EXPECT_TRUE(absl::IsInvalidArgument(aggregator->ImportMemory(bad)));
    EXPECT_EQ(aggregator->ExportMemory(), good);  // unchanged
  }
}

}  // namespace
}  // namespace fedcl::fl
