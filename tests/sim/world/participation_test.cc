#include "sim/world/participation.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;

// Four standard deviations of an empirical frequency over `n` Bernoulli(p) trials.
double Tolerance(double p, double n) { return 4.0 * std::sqrt(p * (1.0 - p) / n); }

std::unique_ptr<ParticipationProcess> Make(absl::string_view pattern, std::vector<float> p,
                                           uint64_t seed = 7,
                                           const AvailabilityTrace* trace = nullptr) {
  absl::StatusOr<PatternSpec> spec = ParsePattern(pattern);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto process = ParticipationProcess::Create(*spec, std::move(p), seed, trace);
  EXPECT_TRUE(process.ok()) << process.status();
  return std::move(*process);
}

TEST(ParsePatternTest, AcceptsTheFourFamilies) {
  EXPECT_EQ(ParsePattern("bernoulli")->kind, PatternKind::kBernoulli);
  EXPECT_EQ(ParsePattern("trace")->kind, PatternKind::kTrace);
  EXPECT_DOUBLE_EQ(ParsePattern("markov-0.05")->markov_a, 0.05);
  EXPECT_EQ(ParsePattern("cyclic-100")->cyclic_length, 100);
}

TEST(ParsePatternTest, RejectsImpossibleValuesByName) {
  EXPECT_THAT(ParsePattern("markov-0").status().message(), HasSubstr("(0, 1]"));
  EXPECT_THAT(ParsePattern("markov-1.5").status().message(), HasSubstr("(0, 1]"));
  EXPECT_THAT(ParsePattern("markov-x").status().message(), HasSubstr("markov-x"));
  EXPECT_THAT(ParsePattern("cyclic-1").status().message(), HasSubstr("cycle length"));
  EXPECT_THAT(ParsePattern("cyclic-2.5").status().message(), HasSubstr("cycle length"));
  EXPECT_THAT(ParsePattern("uniformish").status().message(), HasSubstr("unknown participation"));
}

TEST(ParticipationTest, RefusesProbabilitiesOutsideZeroOne) {
  PatternSpec bernoulli;
  EXPECT_FALSE(ParticipationProcess::Create(bernoulli, {0.5f, 0.0f}, 1, nullptr).ok());
  EXPECT_FALSE(ParticipationProcess::Create(bernoulli, {1.5f}, 1, nullptr).ok());
  EXPECT_FALSE(ParticipationProcess::Create(*ParsePattern("trace"), {0.5f}, 1, nullptr).ok());
}

// §1.6's worked examples.
TEST(ParticipationTest, MarkovRatesMatchTheSpecExamples) {
  MarkovRates r = MarkovRatesFor(0.1, 0.05);
  EXPECT_NEAR(r.activate, 0.05, 1e-12);
  EXPECT_NEAR(r.deactivate, 0.45, 1e-12);
  r = MarkovRatesFor(0.02, 0.05);
  EXPECT_NEAR(r.activate, 0.05 / 2.45, 1e-12);  // 0.02041
  EXPECT_DOUBLE_EQ(r.deactivate, 1.0);
  // The stationary distribution a / (a + b) is p in both cases.
  EXPECT_NEAR(r.activate / (r.activate + r.deactivate), 0.02, 1e-12);
}

TEST(ParticipationTest, CycleShapeMatchesTheSpecExample) {
  CycleShape s = CycleShapeFor(0.1, 100);
  EXPECT_EQ(s.active, 10);
  EXPECT_EQ(s.inactive, 90);
  s = CycleShapeFor(0.001, 100);  // at least one active round
  EXPECT_EQ(s.active, 1);
  EXPECT_EQ(s.inactive, 99);
}

TEST(ParticipationTest, LabelCorrelatedProbabilityIsClippedDotProduct) {
  const std::vector<double> m = {0.5, 0.5, 0.0, 0.0};
  // C · p_mean · <d, m> = 4 · 0.1 · 0.5 = 0.2
  EXPECT_FLOAT_EQ(LabelCorrelatedProbability({1, 0, 0, 0}, m, 0.1, 0.02), 0.2f);
  // Nothing in common with m: clipped up to p_min.
  EXPECT_FLOAT_EQ(LabelCorrelatedProbability({0, 0, 1, 0}, m, 0.1, 0.02), 0.02f);
  // Never above 1.
  EXPECT_FLOAT_EQ(LabelCorrelatedProbability({1, 0, 0, 0}, {1, 0, 0, 0}, 0.9, 0.02), 1.0f);
  // m is a probability vector shared by every client of a seed.
  const std::vector<double> drawn = ParticipationPreference(10, 0.1, 3);
  double sum = 0;
  for (double x : drawn) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_EQ(drawn, ParticipationPreference(10, 0.1, 3));
}

TEST(ParticipationTest, BernoulliRateMatchesEachClientsProbability) {
  const std::vector<float> p = {0.02f, 0.1f, 0.3f, 0.5f, 0.9f};
  auto process = Make("bernoulli", p);
  const int rounds = 20000;
  std::vector<int> count(p.size());
  for (int t = 0; t < rounds; ++t) {
    process->Advance(t);
    for (uint32_t n = 0; n < p.size(); ++n) count[n] += process->Participates(n);
  }
  for (size_t n = 0; n < p.size(); ++n) {
    EXPECT_NEAR(count[n] / double(rounds), p[n], Tolerance(p[n], rounds)) << "client " << n;
  }
}

TEST(ParticipationTest, MarkovChainHasStationaryRateAndTransitions) {
  const std::vector<float> p = {0.02f, 0.1f, 0.4f};
  const double a = 0.05;
  auto process = Make("markov-0.05", p);
  const int rounds = 100000;
  std::vector<int> active(p.size()), from_active(p.size()), active_to_inactive(p.size()),
      from_inactive(p.size()), inactive_to_active(p.size());
  std::vector<bool> previous(p.size());
  for (uint32_t n = 0; n < p.size(); ++n) previous[n] = process->Participates(n);
  for (int t = 0; t < rounds; ++t) {
    process->Advance(t);
    for (uint32_t n = 0; n < p.size(); ++n) {
      const bool now = process->Participates(n);
      active[n] += now;
      if (previous[n]) {
        ++from_active[n];
        active_to_inactive[n] += !now;
      } else {
        ++from_inactive[n];
        inactive_to_active[n] += now;
      }
      previous[n] = now;
    }
  }
  for (size_t n = 0; n < p.size(); ++n) {
    const MarkovRates rates = MarkovRatesFor(p[n], a);
    // A correlated chain mixes slowly: its rate's spread is wider than Bernoulli's, by about
    // sqrt((2 − a − b) / (a + b)).
    const double inflation =
        std::sqrt((2 - rates.activate - rates.deactivate) / (rates.activate + rates.deactivate));
    EXPECT_NEAR(active[n] / double(rounds), p[n], inflation * Tolerance(p[n], rounds))
        << "client " << n;
    EXPECT_NEAR(inactive_to_active[n] / double(from_inactive[n]), rates.activate,
                Tolerance(rates.activate, from_inactive[n]));
    EXPECT_NEAR(active_to_inactive[n] / double(from_active[n]), rates.deactivate,
                Tolerance(rates.deactivate, from_active[n]) + 1e-9);
  }
}

TEST(ParticipationTest, CyclicClientsAreActiveExactlyAOfEveryLRounds) {
  const std::vector<float> p = {0.1f, 0.25f, 0.02f};
  auto process = Make("cyclic-100", p);
  std::vector<std::vector<bool>> history(p.size());
  const int rounds = 1000;
  for (int t = 0; t < rounds; ++t) {
    process->Advance(t);
    for (uint32_t n = 0; n < p.size(); ++n) history[n].push_back(process->Participates(n));
  }
  for (size_t n = 0; n < p.size(); ++n) {
    const CycleShape shape = CycleShapeFor(p[n], 100);
    // Every window of one full cycle holds exactly A active rounds, in one contiguous run.
    for (int start = 0; start + 100 <= rounds; start += 37) {
      int count = 0;
      for (int t = start; t < start + 100; ++t) count += history[n][t];
      EXPECT_EQ(count, shape.active) << "client " << n << " window at " << start;
    }
    // The first round is inactive unless the random phase ended the inactive run at once.
    int runs = 0;
    for (int t = 1; t < rounds; ++t) runs += history[n][t] && !history[n][t - 1];
    EXPECT_NEAR(runs, rounds / 100.0, 1.0);
  }
}

TEST(ParticipationTest, CyclicPhasesDifferBetweenClients) {
  // Not all clients share one phase: in some rounds only part of them is active.
  auto process = Make("cyclic-100", std::vector<float>(50, 0.1f));
  int partial_rounds = 0;
  for (int t = 0; t < 100; ++t) {
    process->Advance(t);
    const size_t active = process->Participants(0, 50).size();
    partial_rounds += active > 0 && active < 50;
  }
  EXPECT_GT(partial_rounds, 50);
}

// Shards advancing only their own clients draw exactly what one process draws.
TEST(ParticipationTest, ShardingChangesNothing) {
  for (absl::string_view pattern : {"bernoulli", "markov-0.05", "cyclic-20"}) {
    std::vector<float> p(100);
    for (int n = 0; n < 100; ++n) p[n] = 0.02f + 0.009f * n;
    auto whole = Make(pattern, p, 11);
    auto shard_a = Make(pattern, p, 11);
    auto shard_b = Make(pattern, p, 11);
    for (int t = 0; t < 300; ++t) {
      whole->Advance(t);
      shard_a->Advance(t, 0.0, 0, 37);
      shard_b->Advance(t, 0.0, 37, 100);
      std::vector<uint32_t> joined = shard_a->Participants(0, 37);
      for (uint32_t n : shard_b->Participants(37, 100)) joined.push_back(n);
      ASSERT_EQ(joined, whole->Participants(0, 100)) << pattern << " round " << t;
    }
  }
}

TEST(ParticipationTest, SeedsGiveDifferentDraws) {
  auto a = Make("bernoulli", std::vector<float>(200, 0.5f), 1);
  auto b = Make("bernoulli", std::vector<float>(200, 0.5f), 2);
  a->Advance(0);
  b->Advance(0);
  EXPECT_NE(a->Participants(0, 200), b->Participants(0, 200));
}

TEST(ParticipationTest, TraceInRoundsFollowsTheWindows) {
  absl::StatusOr<AvailabilityTrace> trace =
      AvailabilityTrace::Parse("client,from_round,until_round\n0,2,4\n1,0,1\n1,3,5\n");
  ASSERT_TRUE(trace.ok()) << trace.status();
  auto process = Make("trace", {1.0f, 1.0f, 1.0f}, 1, &*trace);
  std::vector<std::vector<uint32_t>> seen;
  for (int t = 0; t < 6; ++t) {
    process->Advance(t);
    seen.push_back(process->Participants(0, 3));
  }
  using V = std::vector<uint32_t>;
  EXPECT_EQ(seen, (std::vector<V>{{1}, {}, {0}, {0, 1}, {1}, {}}));
}

TEST(ParticipationTest, DormantClientsCostEightBytes) {
  auto process = Make("markov-0.05", std::vector<float>(100000, 0.1f));
  EXPECT_EQ(process->state_bytes(), 100000 * 8);
}

}  // namespace
}  // namespace fedcl::sim
