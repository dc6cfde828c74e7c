#include "core/data/shifts.h"

#include <cmath>

#include "gtest/gtest.h"

namespace fedcl::data {
namespace {

Dataset Images(int n, int side, float fill) {
  Dataset d;
  d.channels = 1;
  d.height = d.width = side;
  d.num_classes = 2;
  d.images = nn::Matrix::Constant(n, side * side, fill);
  d.labels.assign(n, 0);
  return d;
}

constexpr ShiftOptions kRaw = {.standardized = false};

TEST(ShiftsTest, InversionAndRotationAreExactPermutationsOfPixelValues) {
  Dataset d = Images(1, 4, 0.0f);
  for (int p = 0; p < 16; ++p) d.images(0, p) = p / 16.0f;
  const nn::Matrix original = d.images;
  base::Rng rng(1);
  ASSERT_TRUE(ApplyShift(Shift::kInversion, d, rng, kRaw).ok());
  EXPECT_FLOAT_EQ(d.images(0, 3), 1.0f - 3 / 16.0f);
  ASSERT_TRUE(ApplyShift(Shift::kInversion, d, rng, kRaw).ok());
  EXPECT_TRUE(d.images.isApprox(original));
  // 90° counter-clockwise: the top-right pixel (0, 3) moves to the top-left (0, 0).
  ASSERT_TRUE(ApplyShift(Shift::kRotation, d, rng, kRaw).ok());
  EXPECT_FLOAT_EQ(d.images(0, 0), original(0, 3));
  EXPECT_FLOAT_EQ(d.images(0, 4 * 3 + 0), original(0, 0));  // (0, 0) -> (3, 0)
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(ApplyShift(Shift::kRotation, d, rng, kRaw).ok());
  EXPECT_EQ(d.images, original);
}

TEST(ShiftsTest, StandardisedImagesAreShiftedInPixelSpace) {
  Dataset d = Images(1, 2, (0.25f - kFashionMnistMean) / kFashionMnistStddev);
  base::Rng rng(1);
  ASSERT_TRUE(ApplyShift(Shift::kInversion, d, rng).ok());
  EXPECT_NEAR(d.images(0, 0) * kFashionMnistStddev + kFashionMnistMean, 0.75f, 1e-5);
}

TEST(ShiftsTest, NoiseHasTheRequestedSpreadAndStaysInRange) {
  Dataset d = Images(200, 28, 0.5f);
  base::Rng rng(2);
  ASSERT_TRUE(ApplyShift(Shift::kNoise, d, rng, kRaw).ok());
  const double mean = d.images.mean();
  const double var = (d.images.array() - mean).square().mean();
  EXPECT_NEAR(mean, 0.5, 0.01);
  // σ = 0.3 clipped at ±0.5 from 0.5 (±1.67σ) loses a little variance.
  EXPECT_NEAR(std::sqrt(var), 0.3, 0.03);
  EXPECT_GE(d.images.minCoeff(), 0.0f);
  EXPECT_LE(d.images.maxCoeff(), 1.0f);
}

TEST(ShiftsTest, BlurKeepsFlatImagesAndSpreadsAPoint) {
  Dataset flat = Images(1, 28, 0.7f);
  base::Rng rng(3);
  ASSERT_TRUE(ApplyShift(Shift::kBlur, flat, rng, kRaw).ok());
  EXPECT_TRUE(flat.images.isApprox(nn::Matrix::Constant(1, 784, 0.7f)));
  Dataset point = Images(1, 28, 0.0f);
  point.images(0, 14 * 28 + 14) = 1.0f;
  ASSERT_TRUE(ApplyShift(Shift::kBlur, point, rng, kRaw).ok());
  EXPECT_NEAR(point.images.sum(), 1.0f, 1e-5);  // far from the edges, mass is kept
  const float centre = point.images(0, 14 * 28 + 14);
  const float g = 1.0f / (2 * 3.14159265f * 1.5f * 1.5f);  // continuous Gaussian peak
  EXPECT_NEAR(centre, g, 0.01f);
  EXPECT_GT(point.images(0, 14 * 28 + 15), 0.5f * centre);
  EXPECT_FALSE(ParseShift("sepia").ok());
  EXPECT_EQ(*ParseShift("rotation"), Shift::kRotation);
}

}  // namespace
}  // namespace fedcl::data
