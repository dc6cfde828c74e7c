#include <cmath>

#include "core/ood/detector_registry.h"
#include "core/ood/detectors.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/ood/synthetic.h"

namespace fedcl::ood {
namespace {

TEST(OodMetricsTest, AurocCountsPairsWithTiesAsHalf) {
  EXPECT_DOUBLE_EQ(*Auroc({0.1f, 0.2f}, {0.3f, 0.4f}), 1.0);
  EXPECT_DOUBLE_EQ(*Auroc({0.3f, 0.4f}, {0.1f, 0.2f}), 0.0);
  EXPECT_DOUBLE_EQ(*Auroc({0.5f}, {0.5f}), 0.5);
  // ID {1, 2, 3} against OOD {2}: 1 < 2 wins, 2 ties, 3 loses -> 1.5 / 3.
  EXPECT_DOUBLE_EQ(*Auroc({1, 2, 3}, {2}), 0.5);
  EXPECT_FALSE(Auroc({}, {1}).ok());
  EXPECT_FALSE(Auroc({1}, {NAN}).ok());
}

TEST(OodMetricsTest, ThresholdKeeps95PercentAndFprCountsAcceptedOod) {
  std::vector<float> id, ood;
  for (int i = 1; i <= 100; ++i) id.push_back(static_cast<float>(i));
  for (int i = 90; i < 110; ++i) ood.push_back(static_cast<float>(i));
  EXPECT_FLOAT_EQ(*CalibratedThreshold(id), 95.0f);    // exactly 95 of 100 at or below
  EXPECT_DOUBLE_EQ(*FprAt95Tpr(id, ood), 6.0 / 20.0);  // 90..95 are accepted
  EXPECT_FLOAT_EQ(*CalibratedThreshold(id, 1.0), 100.0f);
  EXPECT_FALSE(CalibratedThreshold(id, 0.0).ok());
}

TEST(DetectorCalibrationTest, KeepsNinetyFivePercentOfHeldOutData) {
  testing::Synthetic s = testing::MakeData(400, 3.0f);
  std::unique_ptr<OodDetector> detector = *MakeDetector("mahalanobis");
  ASSERT_TRUE(detector->Fit({.features = &s.train}, s.labels).ok());
  EXPECT_FALSE(detector->IsOod(1e9f));  // not calibrated: flags nothing
  ASSERT_TRUE(detector->Calibrate({.features = &s.held_out}).ok());
  int flagged = 0;
  const std::vector<float> scores = *detector->Score({.features = &s.held_out});
  for (float score : scores) flagged += detector->IsOod(score);
  EXPECT_LE(flagged, static_cast<int>(0.05 * s.held_out.rows()));
  EXPECT_GE(flagged, static_cast<int>(0.05 * s.held_out.rows()) - 1);
}

TEST(FeatureNeedsTest, OnlyLogitsIsLogitsOnlyAndDescriptionsNameEachField) {
  EXPECT_TRUE(FeatureNeeds{.logits = true}.LogitsOnly());
  EXPECT_FALSE((FeatureNeeds{.logits = true, .features = true}.LogitsOnly()));
  EXPECT_FALSE(FeatureNeeds{.token_mean = true}.LogitsOnly());
  EXPECT_FALSE(FeatureNeeds{}.LogitsOnly());
  EXPECT_EQ((FeatureNeeds{.layers = true, .token_mean = true}.Describe()),
            "the CLS token after each block, the token mean of the last block's input");
  EXPECT_EQ(FeatureNeeds{}.Describe(), "nothing");
}

TEST(ShiftMonitorTest, OneOddSampleDoesNotTriggerAWindowDoes) {
  ShiftMonitor monitor(10, 0.3);
  monitor.Add(true);
  for (int i = 0; i < 9; ++i) monitor.Add(false);
  EXPECT_FALSE(monitor.Shifted());  // 1 of 10
  monitor.Add(true);
  monitor.Add(true);
  EXPECT_FALSE(monitor.Shifted());  // the first flag slid out: 2 of 10
  monitor.Add(true);
  EXPECT_TRUE(monitor.Shifted());  // 3 of 10
  EXPECT_DOUBLE_EQ(monitor.flagged_fraction(), 0.3);
  monitor.Reset();
  monitor.Add(true);
  EXPECT_FALSE(monitor.Shifted());  // a window must fill first
}

}  // namespace
}  // namespace fedcl::ood
