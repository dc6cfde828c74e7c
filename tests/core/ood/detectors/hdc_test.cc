#include "core/ood/detectors/hdc.h"

#include "core/ood/detector_registry.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/ood/synthetic.h"

namespace fedcl::ood {
namespace {

TEST(HdcDetectorTest, ProjectionsAreSemiOrthogonalAndPrototypesAreBundles) {
  testing::Synthetic s = testing::MakeData(100, 3.0f);
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

// Through the registry: the dimension is an option, the projections come from the context's seed.
TEST(HdcDetectorTest, TheRegistryPassesDimensionAndSeed) {
  testing::Synthetic s = testing::MakeData(50, 3.0f);
  std::unique_ptr<OodDetector> made =
      *MakeDetector("hdc", {.seed = 3, .options = "dimension: 500"});
  HdcDetector direct({.dimension = 500, .seed = 3});
  ASSERT_TRUE(made->Fit({.layers = {&s.train}}, s.labels).ok());
  ASSERT_TRUE(direct.Fit({.layers = {&s.train}}, s.labels).ok());
  EXPECT_EQ(*made->Score({.layers = {&s.ood}}), *direct.Score({.layers = {&s.ood}}));
  EXPECT_EQ(static_cast<HdcDetector&>(*made).projection(0).cols(), 500);
  EXPECT_THAT(MakeDetector("hdc", {.options = "dimension: 0"}).status().message(),
              ::testing::HasSubstr("'dimension' must be >= 1"));
  std::unique_ptr<OodDetector> narrow = *MakeDetector("hdc", {.options = "dimension: 4"});
  EXPECT_THAT(narrow->Fit({.layers = {&s.train}}, s.labels).message(),
              ::testing::HasSubstr("needs dimension >= that"));
}

}  // namespace
}  // namespace fedcl::ood
