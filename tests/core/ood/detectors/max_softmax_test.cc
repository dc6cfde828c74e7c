#include <cmath>

#include "core/ood/detector_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

TEST(MaxSoftmaxDetectorTest, ScoreIsTheNegatedLargestProbability) {
  nn::Matrix logits(2, 2);
  logits << 0.0f, std::log(3.0f), 0.0f, 0.0f;
  std::unique_ptr<OodDetector> msp = *MakeDetector("max_softmax");
  const std::vector<float> scores = *msp->Score({.logits = &logits});
  EXPECT_NEAR(scores[0], -0.75f, 1e-6);
  EXPECT_NEAR(scores[1], -0.5f, 1e-6);
  std::vector<float> into(2);
  ASSERT_TRUE(msp->ScoreInto({.logits = &logits}, absl::MakeSpan(into)).ok());
  EXPECT_EQ(into, scores);
  EXPECT_FALSE(msp->Score({}).ok());
  EXPECT_THAT(MakeDetector("max_softmax", {.options = "temperature: 2"}).status().message(),
              ::testing::HasSubstr("unknown key 'temperature'"));
}

}  // namespace
}  // namespace fedcl::ood
