#include <cmath>

#include "Eigen/LU"
#include "core/base/random.h"
#include "core/ood/detectors.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

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

TEST(PostHocDetectorTest, MaxSoftmaxAndEnergyFollowTheirFormulas) {
  nn::Matrix logits(2, 2);
  logits << 0.0f, std::log(3.0f), 0.0f, 0.0f;
  auto msp = *MaxSoftmaxDetector().Score({.logits = &logits});
  EXPECT_NEAR(msp[0], -0.75f, 1e-6);
  EXPECT_NEAR(msp[1], -0.5f, 1e-6);
  auto energy = *EnergyDetector().Score({.logits = &logits});
  EXPECT_NEAR(energy[0], -std::log(4.0f), 1e-5);  // −log(1 + 3)
  EXPECT_NEAR(energy[1], -std::log(2.0f), 1e-5);
  auto hot = *EnergyDetector(2.0f).Score({.logits = &logits});
  EXPECT_NEAR(hot[1], -2.0f * std::log(2.0f), 1e-5);  // −T·log(2)
  EXPECT_FALSE(MaxSoftmaxDetector().Score({}).ok());
}

// Three Gaussian classes in 8 dimensions; OOD samples come from a shifted, wider cloud.
struct Synthetic {
  nn::Matrix train, held_out, ood;
  std::vector<int32_t> labels;
};

Synthetic MakeData(int per_class, float shift) {
  base::Rng rng(7);
  const int d = 8;
  Synthetic s;
  auto sample = [&](nn::Matrix& m, int rows, bool out, std::vector<int32_t>* labels) {
    m.resize(rows, d);
    for (int i = 0; i < rows; ++i) {
      const int c = i % 3;
      if (labels) labels->push_back(c);
      for (int j = 0; j < d; ++j) {
        const float centre = out ? shift : (j == c ? 4.0f : 0.0f);
        m(i, j) = centre + static_cast<float>(rng.Normal()) * (out ? 1.5f : 1.0f);
      }
    }
  };
  sample(s.train, 3 * per_class, false, &s.labels);
  sample(s.held_out, 3 * per_class, false, nullptr);
  sample(s.ood, 3 * per_class, true, nullptr);
  return s;
}

TEST(MahalanobisDetectorTest, ScoreIsTheSmallestClassDistance) {
  Synthetic s = MakeData(200, 3.0f);
  MahalanobisDetector detector;
  ASSERT_TRUE(detector.Fit({.features = &s.train}, s.labels).ok());
  // Recompute one score by hand: class means, shared covariance, its inverse.
  Eigen::MatrixXd z = s.train.cast<double>();
  std::vector<Eigen::RowVectorXd> mean(3, Eigen::RowVectorXd::Zero(8));
  for (int i = 0; i < z.rows(); ++i) mean[s.labels[i]] += z.row(i) / (z.rows() / 3.0);
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(8, 8);
  for (int i = 0; i < z.rows(); ++i) {
    Eigen::RowVectorXd c = z.row(i) - mean[s.labels[i]];
    cov += c.transpose() * c / static_cast<double>(z.rows());
  }
  const Eigen::MatrixXd precision = cov.inverse();
  nn::Matrix one = s.ood.topRows(1);
  double expected = 1e300;
  for (int c = 0; c < 3; ++c) {
    Eigen::RowVectorXd diff = one.cast<double>().row(0) - mean[c];
    expected = std::min(expected, (diff * precision * diff.transpose())(0, 0));
  }
  EXPECT_NEAR((*detector.Score({.features = &one}))[0], expected, 1e-3 * expected);
  // And it separates the shifted cloud.
  auto id = *detector.Score({.features = &s.held_out});
  auto ood = *detector.Score({.features = &s.ood});
  EXPECT_GT(*Auroc(id, ood), 0.99);
}

TEST(HdcDetectorTest, ProjectionsAreSemiOrthogonalAndPrototypesAreBundles) {
  Synthetic s = MakeData(100, 3.0f);
  nn::Matrix second = s.train * 0.5f;  // a second "layer"
  HdcDetector detector({.dimension = 2000, .seed = 3});
  ASSERT_TRUE(detector.Fit({.layers = {&s.train, &second}}, s.labels).ok());
  for (int l = 0; l < 2; ++l) {
    const nn::Matrix& p = detector.projection(l);
    EXPECT_EQ(p.rows(), 8);
    EXPECT_EQ(p.cols(), 2000);
    EXPECT_TRUE((p * p.transpose()).isApprox(nn::Matrix::Identity(8, 8), 1e-4f));
  }
  // A class's own bundle is closest to its prototype: one sample per class scores −1.
  nn::Matrix three = s.train.topRows(3), three_second = three * 0.5f;
  HdcDetector single({.dimension = 2000, .seed = 3});
  ASSERT_TRUE(single.Fit({.layers = {&three, &three_second}}, {0, 1, 2}).ok());
  const std::vector<float> own = *single.Score({.layers = {&three, &three_second}});
  for (float score : own) EXPECT_NEAR(score, -1.0f, 1e-5);
  // Separates the shifted cloud, and the same seed draws the same projections.
  nn::Matrix held_second = s.held_out * 0.5f, ood_second = s.ood * 0.5f;
  auto id = *detector.Score({.layers = {&s.held_out, &held_second}});
  auto ood = *detector.Score({.layers = {&s.ood, &ood_second}});
  EXPECT_GT(*Auroc(id, ood), 0.95);
  HdcDetector again({.dimension = 2000, .seed = 3});
  ASSERT_TRUE(again.Fit({.layers = {&s.train, &second}}, s.labels).ok());
  EXPECT_EQ(again.projection(1), detector.projection(1));
  EXPECT_FALSE(detector.Score({.layers = {&s.ood}}).ok());  // wrong number of layers
}

TEST(DetectorCalibrationTest, KeepsNinetyFivePercentOfHeldOutData) {
  Synthetic s = MakeData(400, 3.0f);
  MahalanobisDetector detector;
  ASSERT_TRUE(detector.Fit({.features = &s.train}, s.labels).ok());
  EXPECT_FALSE(detector.IsOod(1e9f));  // not calibrated: flags nothing
  ASSERT_TRUE(detector.Calibrate({.features = &s.held_out}).ok());
  int flagged = 0;
  const std::vector<float> scores = *detector.Score({.features = &s.held_out});
  for (float score : scores) flagged += detector.IsOod(score);
  EXPECT_LE(flagged, static_cast<int>(0.05 * s.held_out.rows()));
  EXPECT_GE(flagged, static_cast<int>(0.05 * s.held_out.rows()) - 1);
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
