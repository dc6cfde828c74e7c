#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/ood/detector_registry.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

// Token means on a random 3-dimensional subspace of R^16 with a little noise; the shifted ones
// add unit noise off it, which a bottleneck of 4 cannot reconstruct.
class LowRank {
 public:
  explicit LowRank(uint64_t seed) : rng_(seed), basis_(3, 16) {
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 16; ++j) basis_(i, j) = static_cast<float>(rng_.Normal());
  }
  nn::Matrix Sample(int n, bool shifted) {
    nn::Matrix codes(n, 3), noise(n, 16);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < 3; ++j) codes(i, j) = static_cast<float>(rng_.Normal());
      for (int j = 0; j < 16; ++j)
        noise(i, j) = static_cast<float>(rng_.Normal()) * (shifted ? 1.0f : 0.05f);
    }
    return codes * basis_ + noise;
  }

 private:
  base::Rng rng_;
  nn::Matrix basis_;
};

TEST(RdZscoreDetectorTest, SeparatesAShiftedDistributionOfTokenMeans) {
  LowRank data(9);
  const nn::Matrix train = data.Sample(1000, false), held = data.Sample(400, false),
                   shifted = data.Sample(400, true);
  std::unique_ptr<OodDetector> detector =
      *MakeDetector("rd_zscore", {.options = "bottleneck: 4 epochs: 10"});
  ASSERT_TRUE(detector->Fit({.token_mean = &train}, {}).ok());
  ASSERT_TRUE(detector->Calibrate({.token_mean = &held}).ok());
  const std::vector<float> id = *detector->Score({.token_mean = &held});
  const std::vector<float> ood = *detector->Score({.token_mean = &shifted});
  EXPECT_GT(*Auroc(id, ood), 0.95);
  EXPECT_THAT(detector->Score({}).status().message(), ::testing::HasSubstr("token means"));
  // The same seed trains the same descriptor.
  std::unique_ptr<OodDetector> again =
      *MakeDetector("rd_zscore", {.options = "bottleneck: 4 epochs: 10"});
  ASSERT_TRUE(again->Fit({.token_mean = &train}, {}).ok());
  EXPECT_EQ(*again->Score({.token_mean = &shifted}), ood);
}

TEST(RdZscoreDetectorTest, BadOptionsAndABottleneckThatDoesNotCompressAreRefusedByName) {
  for (const char* key : {"bottleneck", "epochs", "batch_size", "learning_rate"}) {
    absl::Status s = MakeDetector("rd_zscore", {.options = absl::StrCat(key, ": 0")}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(s.message(), ::testing::HasSubstr(absl::StrCat("'", key, "'"))) << key;
  }
  LowRank data(4);
  const nn::Matrix train = data.Sample(50, false);
  std::unique_ptr<OodDetector> wide = *MakeDetector("rd_zscore", {.options = "bottleneck: 16"});
  EXPECT_THAT(wide->Fit({.token_mean = &train}, {}).message(),
              ::testing::HasSubstr("'bottleneck' (16) must be below the width of the token "
                                   "means (16)"));
  EXPECT_EQ(wide->Score({.token_mean = &train}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace fedcl::ood
