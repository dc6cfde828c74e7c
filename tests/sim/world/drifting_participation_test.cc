// The non-stationary participation patterns (algorithms-next.md §2.4, FedAWE's generators):
// the probability each formula gives at chosen rounds (§2.8's test vectors), the draws following
// it round by round, and the long-run rate FedAU's weights are measured against.
#include <cmath>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;

PatternSpec Pattern(absl::string_view text) {
  absl::StatusOr<PatternSpec> spec = ParsePattern(text);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

TEST(DriftingPatternTest, ParsesTheThreeFamiliesAndRefusesImpossibleAmplitudes) {
  EXPECT_EQ(Pattern("sine-0.3").kind, PatternKind::kSine);
  EXPECT_DOUBLE_EQ(Pattern("sine-0.3").sine_amplitude, 0.3);
  EXPECT_EQ(Pattern("sine-cutoff").kind, PatternKind::kSineCutoff);
  EXPECT_EQ(Pattern("square").kind, PatternKind::kSquare);
  EXPECT_THAT(ParsePattern("sine-0").status().message(), HasSubstr("amplitude"));
  EXPECT_THAT(ParsePattern("sine-1.5").status().message(), HasSubstr("amplitude"));
  EXPECT_THAT(ParsePattern("sine-x").status().message(), HasSubstr("sine-x"));
}

// §2.8: fluctuate 1 (a = 0.3) with p = 0.5 gives 0.5 at t = 5 and 0.2 at t = 15; the cut-off
// sine with p = 0.12 gives 0.12 at t = 5 and 0 at t = 15 (0.048 < 0.1); the square wave gives
// 0.4·p in rounds 10..19 and p in 0..9 and 20..29.
TEST(DriftingPatternTest, ProbabilitiesAtChosenRoundsAreTheReferenceFormulas) {
  EXPECT_NEAR(RoundProbability(Pattern("sine-0.3"), 0.5, 5), 0.5, 1e-12);
  EXPECT_NEAR(RoundProbability(Pattern("sine-0.3"), 0.5, 15), 0.2, 1e-12);
  EXPECT_NEAR(RoundProbability(Pattern("sine-0.1"), 0.5, 15), 0.4, 1e-12);
  EXPECT_NEAR(RoundProbability(Pattern("sine-0.2"), 0.5, 0), 0.4, 1e-12);
  EXPECT_NEAR(RoundProbability(Pattern("sine-cutoff"), 0.12, 5), 0.12, 1e-12);
  EXPECT_EQ(RoundProbability(Pattern("sine-cutoff"), 0.12, 15), 0.0);
  for (int t = 0; t < 30; ++t) {
    const double expected = (t >= 10 && t < 20) ? 0.2 : 0.5;
    EXPECT_NEAR(RoundProbability(Pattern("square"), 0.5, t), expected, 1e-12) << "round " << t;
  }
  EXPECT_EQ(RoundProbability(Pattern("bernoulli"), 0.37, 15), 0.37);
}

// Each round's participants are Bernoulli draws at that round's probability: over many clients
// of the same p_n, the fraction taking part follows the formula round by round.
TEST(DriftingPatternTest, EachRoundsParticipationFollowsItsProbability) {
  const int clients = 20000;
  const double p = 0.6;
  for (const char* name : {"sine-0.3", "sine-cutoff", "square"}) {
    const PatternSpec spec = Pattern(name);
    auto process = ParticipationProcess::Create(
        spec, std::vector<float>(clients, static_cast<float>(p)), 11, nullptr);
    ASSERT_TRUE(process.ok()) << process.status();
    for (int t = 0; t < 40; ++t) {
      (*process)->Advance(t);
      const double expected = RoundProbability(spec, p, t);
      const double observed =
          static_cast<double>((*process)->Participants(0, clients).size()) / clients;
      const double tolerance = 4.0 * std::sqrt(expected * (1.0 - expected) / clients) + 1e-9;
      EXPECT_NEAR(observed, expected, tolerance) << name << " round " << t;
    }
  }
}

// The long-run rate is the period's mean: (1 − a)·p for the sine (the sine averages 0), 0.7·p for
// the square wave; a cut-off client whose probability never reaches 0.1 never takes part.
TEST(DriftingPatternTest, LongRunRateIsThePeriodsMean) {
  EXPECT_NEAR(LongRunProbability(Pattern("sine-0.3"), 0.5), 0.35, 1e-12);
  EXPECT_NEAR(LongRunProbability(Pattern("sine-0.1"), 0.2), 0.18, 1e-12);
  EXPECT_NEAR(LongRunProbability(Pattern("square"), 0.5), 0.35, 1e-12);
  EXPECT_EQ(LongRunProbability(Pattern("sine-cutoff"), 0.09), 0.0);  // peaks at 0.09 < 0.1
  EXPECT_EQ(LongRunProbability(Pattern("markov-0.05"), 0.3), 0.3);
  // Empirically, over many rounds of one client.
  auto process =
      ParticipationProcess::Create(Pattern("sine-0.2"), std::vector<float>{0.5f}, 3, nullptr);
  ASSERT_TRUE(process.ok());
  const int rounds = 40000;
  int taken = 0;
  for (int t = 0; t < rounds; ++t) {
    (*process)->Advance(t);
    taken += (*process)->Participates(0);
  }
  const double rate = LongRunProbability(Pattern("sine-0.2"), 0.5);
  EXPECT_NEAR(static_cast<double>(taken) / rounds, rate,
              4.0 * std::sqrt(rate * (1 - rate) / rounds));
}

}  // namespace
}  // namespace fedcl::sim
