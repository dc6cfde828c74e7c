// The stream tests of core/ood/shift_tests.h against their defining properties: calibrated on
// clean data, each raises about its target rate of alarms on fresh clean data from the same
// source; each finds a real shift within a bounded number of samples; the MMD estimate is
// unbiased (mean 0 between two samples of one distribution). Scores and features are skewed
// and correlated, not standard normal, so that calibration has something to do.
#include "core/ood/shift_tests.h"

#include <cmath>
#include <vector>

#include "core/base/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

using ::testing::HasSubstr;

// A skewed per-sample score: exponential with mean 2, plus a small Gaussian part.
float CleanScore(base::Rng& rng) {
  return static_cast<float>(-2.0 * std::log(1.0 - rng.Uniform()) + rng.Normal(0.0, 0.3));
}

std::vector<float> CleanScores(int n, uint64_t seed) {
  base::Rng rng(seed);
  std::vector<float> scores(n);
  for (float& s : scores) s = CleanScore(rng);
  return scores;
}

TEST(CusumTest, CalibratedOnCleanScoresItKeepsItsFalseAlarmRateOnFreshOnes) {
  absl::StatusOr<CusumTest> test =
      CusumTest::Calibrate(CleanScores(5000, 1), {.false_alarms_per_10k = 2.0});
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_NEAR(test->mean(), 2.0, 0.15);
  base::Rng rng(2);
  int alarms = 0;
  constexpr int kSamples = 400000;
  for (int t = 0; t < kSamples; ++t) alarms += test->Observe(CleanScore(rng));
  const double per_10k = alarms * 10000.0 / kSamples;
  // Target 2: 80 alarms expected here; calibration on 5,000 scores is not exact.
  EXPECT_GT(per_10k, 0.6) << "far more conservative than asked: threshold " << test->threshold();
  EXPECT_LT(per_10k, 4.0) << "threshold " << test->threshold();
}

TEST(CusumTest, AShiftOfOneStandardDeviationIsFoundWithinTensOfSamples) {
  const std::vector<float> clean = CleanScores(5000, 3);
  absl::StatusOr<CusumTest> test = CusumTest::Calibrate(clean, {});
  ASSERT_TRUE(test.ok()) << test.status();
  std::vector<int> delays;
  for (uint64_t trial = 0; trial < 20; ++trial) {
    test->Reset();
    base::Rng rng = base::Rng::ForStream(4, {trial});
    for (int t = 0; t < 2000; ++t) test->Observe(CleanScore(rng));
    test->Reset();  // a clean alarm before the shift would make the delay look shorter
    int delay = 0;
    while (!test->Observe(CleanScore(rng) + static_cast<float>(test->stddev())) && delay < 10000) {
      ++delay;
    }
    delays.push_back(delay);
  }
  std::sort(delays.begin(), delays.end());
  // With k = 0.5 and an in-control run length of 10,000, Page's test needs ~10-20 samples on
  // average for a one-sigma shift.
  EXPECT_LT(delays[10], 40) << "median delay";
  EXPECT_LT(delays[18], 80) << "90th percentile";
}

TEST(CusumTest, ImpossibleSettingsAndDataAreRefusedNamingTheField) {
  const std::vector<float> clean = CleanScores(100, 5);
  EXPECT_THAT(CusumTest::Calibrate(clean, {.false_alarms_per_10k = 0}).status().message(),
              HasSubstr("false_alarms_per_10k"));
  EXPECT_THAT(CusumTest::Calibrate(clean, {.false_alarms_per_10k = 20000}).status().message(),
              HasSubstr("false_alarms_per_10k"));
  EXPECT_THAT(CusumTest::Calibrate(clean, {.allowance = -1}).status().message(),
              HasSubstr("allowance"));
  EXPECT_THAT(CusumTest::Calibrate(absl::MakeSpan(clean).subspan(0, 5), {}).status().message(),
              HasSubstr("at least 16"));
  const std::vector<float> constant(100, 3.0f);
  EXPECT_THAT(CusumTest::Calibrate(constant, {}).status().message(), HasSubstr("do not vary"));
  std::vector<float> broken = clean;
  broken[7] = NAN;
  EXPECT_EQ(CusumTest::Calibrate(broken, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

// Correlated, skewed features: x = A·e with e_i exponential (mean 1), plus `shift` on every one.
void FeatureRow(base::Rng& rng, float shift, float* out) {
  constexpr int kDims = 6;
  double e[kDims];
  for (double& v : e) v = -std::log(1.0 - rng.Uniform());
  for (int i = 0; i < kDims; ++i)
    out[i] = static_cast<float>(e[i] + 0.5 * e[(i + 1) % kDims]) + shift;
}

nn::Matrix Features(int n, uint64_t seed, float shift = 0.0f) {
  base::Rng rng(seed);
  nn::Matrix m(n, 6);
  for (int i = 0; i < n; ++i) FeatureRow(rng, shift, m.row(i).data());
  return m;
}

const MmdOptions kSmall = {.window = 32,
                           .reference = 128,
                           .stride = 32,
                           .false_alarms_per_10k = 20,
                           .calibration_windows = 2000};

TEST(MmdWindowTest, TheEstimateIsUnbiasedBetweenSamplesOfOneDistribution) {
  double sum = 0.0, squares = 0.0;
  constexpr int kPairs = 600;
  for (int w = 0; w < kPairs; ++w) {
    const double v = UnbiasedMmd2(Features(16, 100 + w), Features(24, 5000 + w), 2.0);
    sum += v;
    squares += v * v;
  }
  const double mean = sum / kPairs;
  const double se = std::sqrt((squares / kPairs - mean * mean) / kPairs);
  EXPECT_LT(std::abs(mean), 3 * se) << "mean " << mean << ", standard error " << se;
  // Between two distributions it is clearly positive.
  EXPECT_GT(UnbiasedMmd2(Features(16, 7, 1.0f), Features(24, 8), 2.0), 20 * se);
  // The window test's statistic is the same estimate, its reference term computed once.
  absl::StatusOr<MmdWindowTest> test = MmdWindowTest::Calibrate(Features(2000, 1), kSmall);
  ASSERT_TRUE(test.ok()) << test.status();
  const nn::Matrix window = Features(kSmall.window, 9);
  EXPECT_GT(test->bandwidth(), 0.0);
  EXPECT_NEAR(test->Mmd2(window), UnbiasedMmd2(window, test->reference(), test->bandwidth()),
              1e-12);
}

TEST(MmdWindowTest, CalibratedOnCleanFeaturesItKeepsItsRateAndFindsAShift) {
  absl::StatusOr<MmdWindowTest> test = MmdWindowTest::Calibrate(Features(3000, 2), kSmall);
  ASSERT_TRUE(test.ok()) << test.status();
  base::Rng rng(3);
  float row[6];
  int alarms = 0;
  constexpr int kSamples = 64000;  // 2,000 tests: 4 alarms per test in 1,000 expected
  for (int t = 0; t < kSamples; ++t) {
    FeatureRow(rng, 0.0f, row);
    absl::StatusOr<bool> alarm = test->Observe(row);
    ASSERT_TRUE(alarm.ok());
    alarms += *alarm;
  }
  const double per_10k = alarms * 10000.0 / kSamples;
  EXPECT_LT(per_10k, 40.0);  // target 20: 128 alarms expected
  EXPECT_GT(per_10k, 6.0);
  // A mean shift of half the features' spread, from a fresh window on: found by the first or
  // second test.
  test->Reset();
  int delay = 0;
  for (;; ++delay) {
    ASSERT_LT(delay, 10 * kSmall.window) << "not found";
    FeatureRow(rng, 0.5f, row);
    if (*test->Observe(row)) break;
  }
  EXPECT_LT(delay, 2 * kSmall.window);
}

TEST(MmdWindowTest, ImpossibleSettingsAndSamplesAreRefusedNamingTheField) {
  const nn::Matrix clean = Features(1000, 4);
  MmdOptions options = kSmall;
  options.calibration_windows = 100;  // 10/alpha = 10 / (20 · 32 / 10,000) = 157
  EXPECT_THAT(MmdWindowTest::Calibrate(clean, options).status().message(),
              HasSubstr("calibration_windows must be at least 10/alpha = 157"));
  options = kSmall;
  options.stride = 64;
  EXPECT_THAT(MmdWindowTest::Calibrate(clean, options).status().message(), HasSubstr("stride"));
  options = kSmall;
  options.reference = 990;
  EXPECT_THAT(MmdWindowTest::Calibrate(clean, options).status().message(),
              HasSubstr("reference + window"));
  options = kSmall;
  options.false_alarms_per_10k = 3000;
  EXPECT_THAT(MmdWindowTest::Calibrate(clean, options).status().message(),
              HasSubstr("false_alarms_per_10k"));
  absl::StatusOr<MmdWindowTest> test = MmdWindowTest::Calibrate(clean, kSmall);
  ASSERT_TRUE(test.ok());
  const float short_row[3] = {1, 2, 3};
  EXPECT_EQ(test->Observe(short_row).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedcl::ood
