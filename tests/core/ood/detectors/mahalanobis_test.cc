#include "Eigen/LU"
#include "core/ood/detector_registry.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/ood/synthetic.h"

namespace fedcl::ood {
namespace {

TEST(MahalanobisDetectorTest, ScoreIsTheSmallestClassDistance) {
  testing::Synthetic s = testing::MakeData(200, 3.0f);
  std::unique_ptr<OodDetector> detector = *MakeDetector("mahalanobis");
  ASSERT_TRUE(detector->Fit({.features = &s.train}, s.labels).ok());
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
  EXPECT_NEAR((*detector->Score({.features = &one}))[0], expected, 1e-3 * expected);
  // And it separates the shifted cloud.
  auto id = *detector->Score({.features = &s.held_out});
  auto ood = *detector->Score({.features = &s.ood});
  EXPECT_GT(*Auroc(id, ood), 0.99);
}

TEST(MahalanobisDetectorTest, TooFewSamplesAndMissingLabelsAreRefused) {
  testing::Synthetic s = testing::MakeData(2, 3.0f);  // 6 samples in 8 dimensions
  std::unique_ptr<OodDetector> detector = *MakeDetector("mahalanobis");
  EXPECT_THAT(detector->Fit({.features = &s.train}, s.labels).message(),
              ::testing::HasSubstr("cannot fit a 8-dimensional covariance"));
  testing::Synthetic enough = testing::MakeData(10, 3.0f);
  EXPECT_THAT(detector->Fit({.features = &enough.train}, {}).message(),
              ::testing::HasSubstr("0 labels for 30 samples"));
  EXPECT_EQ(detector->Score({.features = &enough.train}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace fedcl::ood
