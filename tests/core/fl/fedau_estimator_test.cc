#include "core/fl/fedau_estimator.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/base/random.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

// The per-round loop of algorithms.md §1.3, word for word: a counter c_n that every round either
// closes an interval (participation) or grows, firing the cutoff at K; the list of all intervals.
class EagerFedAu {
 public:
  explicit EagerFedAu(int64_t cutoff) : cutoff_(cutoff) {}

  // The weight a participation now would use: the mean of the intervals so far, 1 if none.
  double WeightNow() const {
    if (intervals_.empty()) return 1.0;
    int64_t sum = 0;
    for (int64_t l : intervals_) sum += l;
    return static_cast<double>(sum) / static_cast<double>(intervals_.size());
  }

  // One round; returns the weight used if the client participates.
  std::optional<double> Step(bool participates) {
    if (participates) {
      const double weight = WeightNow();
      intervals_.push_back(c_ + 1);
      c_ = 0;
      return weight;
    }
    ++c_;
    if (cutoff_ > 0 && c_ >= cutoff_) {
      intervals_.push_back(c_);
      c_ = 0;
    }
    return std::nullopt;
  }

  const std::vector<int64_t>& intervals() const { return intervals_; }

 private:
  int64_t cutoff_;
  int64_t c_ = 0;
  std::vector<int64_t> intervals_;
};

const bool kVectorParticipation[] = {false, false, true,  false, true,
                                     true,  false, false, false, true};

struct Trace {
  std::vector<double> weights;
  std::vector<int64_t> intervals;
};

Trace RunLazy(int64_t cutoff, int64_t enrol_round = 0) {
  Trace trace;
  FedAuClientState state = FedAuEnrol(enrol_round);
  for (int64_t t = 0; t < 10; ++t) {
    if (!kVectorParticipation[t]) continue;
    absl::StatusOr<double> w = FedAuParticipate(state, enrol_round + t, cutoff, &trace.intervals);
    EXPECT_TRUE(w.ok()) << w.status();
    trace.weights.push_back(*w);
  }
  return trace;
}

TEST(FedAuEstimatorTest, MatchesReferenceVectorsWithoutCutoff) {
  const Trace trace = RunLazy(kFedAuNoCutoff);
  EXPECT_EQ(trace.weights, (std::vector<double>{1.0, 3.0, 2.5, 2.0}));
  EXPECT_EQ(trace.intervals, (std::vector<int64_t>{3, 2, 1, 4}));
}

TEST(FedAuEstimatorTest, MatchesReferenceVectorsWithCutoffTwo) {
  const Trace trace = RunLazy(2);
  ASSERT_EQ(trace.weights.size(), 4u);
  EXPECT_EQ(trace.weights[0], 2.0);
  EXPECT_EQ(trace.weights[1], 1.5);
  EXPECT_EQ(trace.weights[2], 5.0 / 3.0);
  EXPECT_NEAR(trace.weights[2], 1.6667, 5e-5);
  EXPECT_EQ(trace.weights[3], 1.6);
  EXPECT_EQ(trace.intervals, (std::vector<int64_t>{2, 1, 2, 1, 2, 2}));
}

TEST(FedAuEstimatorTest, EagerReferenceReproducesTheVectors) {
  for (int64_t cutoff : {kFedAuNoCutoff, int64_t{2}}) {
    EagerFedAu eager(cutoff);
    std::vector<double> weights;
    for (bool p : kVectorParticipation) {
      if (auto w = eager.Step(p)) weights.push_back(*w);
    }
    const Trace lazy = RunLazy(cutoff);
    EXPECT_EQ(weights, lazy.weights) << "cutoff " << cutoff;
    EXPECT_EQ(eager.intervals(), lazy.intervals) << "cutoff " << cutoff;
  }
}

TEST(FedAuEstimatorTest, EnrolmentAtRoundRStartsTheCounterAtR) {
  FedAuClientState state = FedAuEnrol(10);
  EXPECT_EQ(state.last_round, 9);
  std::vector<int64_t> recorded;
  EXPECT_EQ(*FedAuParticipate(state, 10, kFedAuNoCutoff, &recorded), 1.0);
  EXPECT_EQ(*FedAuParticipate(state, 13, kFedAuNoCutoff, &recorded), 1.0);
  EXPECT_EQ(FedAuWeightAt(state, 14, kFedAuNoCutoff), 2.0);
  EXPECT_EQ(recorded, (std::vector<int64_t>{1, 3}));
  // The reference vectors shifted by the enrolment round are the same vectors.
  for (int64_t cutoff : {kFedAuNoCutoff, int64_t{2}}) {
    const Trace shifted = RunLazy(cutoff, /*enrol_round=*/37);
    const Trace original = RunLazy(cutoff);
    EXPECT_EQ(shifted.weights, original.weights);
    EXPECT_EQ(shifted.intervals, original.intervals);
  }
}

TEST(FedAuEstimatorTest, CutoffIntervalsOfTheGapCountBeforeTheFirstParticipation) {
  FedAuClientState state = FedAuEnrol(0);
  // Absent for rounds 0..6 with K = 3: intervals 3, 3 are recorded before round 7's weight.
  EXPECT_EQ(FedAuWeightAt(state, 7, 3), 3.0);
  std::vector<int64_t> recorded;
  EXPECT_EQ(*FedAuParticipate(state, 7, 3, &recorded), 3.0);
  EXPECT_EQ(recorded, (std::vector<int64_t>{3, 3, 2}));
  EXPECT_EQ(state, (FedAuClientState{.last_round = 7, .intervals = 3, .interval_sum = 8}));
}

TEST(FedAuEstimatorTest, WeightAtDoesNotChangeStateAndIgnoresPastRounds) {
  FedAuClientState state = FedAuEnrol(0);
  ASSERT_TRUE(FedAuParticipate(state, 4, kFedAuNoCutoff).ok());
  const FedAuClientState before = state;
  EXPECT_EQ(FedAuWeightAt(state, 9, kFedAuNoCutoff), 5.0);
  EXPECT_EQ(FedAuWeightAt(state, 9, 2), (5.0 + 2 + 2) / 3);
  EXPECT_EQ(FedAuWeightAt(state, 4, 2), 5.0);  // not after the last participation: no gap
  EXPECT_EQ(state, before);
}

TEST(FedAuEstimatorTest, ParticipationNotAfterTheLastOneIsRejectedAndChangesNothing) {
  FedAuClientState state = FedAuEnrol(3);
  ASSERT_TRUE(FedAuParticipate(state, 5, kFedAuNoCutoff).ok());
  const FedAuClientState before = state;
  EXPECT_EQ(FedAuParticipate(state, 5, kFedAuNoCutoff).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FedAuParticipate(state, 2, kFedAuNoCutoff).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FedAuParticipate(state, 9, -1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(state, before);
}

TEST(FedAuEstimatorTest, ValidateRejectsImpossibleStates) {
  EXPECT_TRUE(ValidateFedAuClientState(FedAuEnrol(4)).ok());
  EXPECT_TRUE(ValidateFedAuClientState({.last_round = 9, .intervals = 3, .interval_sum = 10}).ok());
  EXPECT_FALSE(ValidateFedAuClientState({.last_round = -2}).ok());
  EXPECT_FALSE(ValidateFedAuClientState({.last_round = 9, .intervals = -1}).ok());
  EXPECT_FALSE(ValidateFedAuClientState({.last_round = 9, .intervals = 3, .interval_sum = 2}).ok());
  EXPECT_FALSE(ValidateFedAuClientState({.last_round = 9, .intervals = 0, .interval_sum = 2}).ok());
}

TEST(FedAuEstimatorTest, LazyFormMatchesEagerReferenceOnRandomSequences) {
  for (uint64_t seed = 0; seed < 60; ++seed) {
    base::Rng rng(seed);
    const int64_t cutoffs[] = {kFedAuNoCutoff, 1, 2, 3, 7, 50};
    const int64_t cutoff = cutoffs[rng.UniformInt(6)];
    const double p = rng.Uniform(0.01, 0.9);
    const int64_t enrol = static_cast<int64_t>(rng.UniformInt(20));
    EagerFedAu eager(cutoff);
    FedAuClientState state = FedAuEnrol(enrol);
    std::vector<int64_t> lazy_intervals;
    for (int64_t t = enrol; t < enrol + 600; ++t) {
      // The weight is a function of the past only: the lazy prediction for round t equals what
      // the eager loop would use, whether or not the client then takes part.
      ASSERT_EQ(FedAuWeightAt(state, t, cutoff), eager.WeightNow()) << "seed " << seed;
      const bool participates = rng.Bernoulli(p);
      std::optional<double> eager_weight = eager.Step(participates);
      if (!participates) continue;
      absl::StatusOr<double> w = FedAuParticipate(state, t, cutoff, &lazy_intervals);
      ASSERT_TRUE(w.ok());
      ASSERT_EQ(*w, *eager_weight) << "seed " << seed << " round " << t;
      // Everything the eager loop recorded so far, the lazy one recorded at this participation.
      ASSERT_EQ(lazy_intervals, eager.intervals()) << "seed " << seed << " round " << t;
      ASSERT_EQ(state.intervals, static_cast<int64_t>(lazy_intervals.size()));
    }
  }
}

// Runs `rounds` rounds of Bernoulli(p) participation and returns the final state.
FedAuClientState RunBernoulli(double p, int64_t cutoff, int64_t rounds, uint64_t seed) {
  base::Rng rng(seed);
  FedAuClientState state = FedAuEnrol(0);
  for (int64_t t = 0; t < rounds; ++t) {
    if (rng.Bernoulli(p)) EXPECT_TRUE(FedAuParticipate(state, t, cutoff).ok());
  }
  return state;
}

TEST(FedAuEstimatorTest, ConvergesToInverseParticipationRate) {
  for (double p : {0.05, 0.2, 0.5}) {
    const FedAuClientState state = RunBernoulli(p, kFedAuNoCutoff, 400000, 11);
    // Intervals are i.i.d. Geometric(p): mean 1/p, variance (1 − p)/p².
    const double m = static_cast<double>(state.intervals);
    const double sigma = std::sqrt((1.0 - p) / (p * p) / m);
    EXPECT_NEAR(state.mean_interval(), 1.0 / p, 5.0 * sigma) << "p " << p << ", M " << m;
    EXPECT_GT(m, 0.9 * p * 400000);
  }
}

TEST(FedAuEstimatorTest, WithCutoffConvergesToTruncatedMean) {
  for (double p : {0.05, 0.2, 0.5}) {
    for (int64_t k : {int64_t{5}, int64_t{50}}) {
      const FedAuClientState state = RunBernoulli(p, k, 400000, 12);
      // Intervals are i.i.d. min(G, K), G ~ Geometric(p): P(L = l) = p(1−p)^(l−1) for l < K and
      // P(L = K) = (1−p)^(K−1).
      double mean = 0, second = 0;
      for (int64_t l = 1; l <= k; ++l) {
        const double prob =
            l < k ? p * std::pow(1 - p, l - 1) : std::pow(1 - p, static_cast<double>(k - 1));
        mean += prob * l;
        second += prob * l * l;
      }
      EXPECT_NEAR(mean, (1 - std::pow(1 - p, static_cast<double>(k))) / p, 1e-12);
      const double sigma = std::sqrt((second - mean * mean) / static_cast<double>(state.intervals));
      EXPECT_NEAR(state.mean_interval(), mean, 5.0 * sigma) << "p " << p << ", K " << k;
    }
  }
}

}  // namespace
}  // namespace fedcl::fl
