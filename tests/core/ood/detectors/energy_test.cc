#include <cmath>

#include "core/ood/detector_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

TEST(EnergyDetectorTest, ScoreIsTheFreeEnergyAtItsTemperature) {
  nn::Matrix logits(2, 2);
  logits << 0.0f, std::log(3.0f), 0.0f, 0.0f;
  std::unique_ptr<OodDetector> energy = *MakeDetector("energy");
  const std::vector<float> scores = *energy->Score({.logits = &logits});
  EXPECT_NEAR(scores[0], -std::log(4.0f), 1e-5);  // −log(1 + 3)
  EXPECT_NEAR(scores[1], -std::log(2.0f), 1e-5);
  std::vector<float> into(2);
  ASSERT_TRUE(energy->ScoreInto({.logits = &logits}, absl::MakeSpan(into)).ok());
  EXPECT_EQ(into, scores);
  std::unique_ptr<OodDetector> hot = *MakeDetector("energy", {.options = "temperature: 2"});
  EXPECT_NEAR((*hot->Score({.logits = &logits}))[1], -2.0f * std::log(2.0f), 1e-5);  // −T·log 2
  EXPECT_FALSE(energy->Score({}).ok());
}

TEST(EnergyDetectorTest, ANonPositiveTemperatureIsRefusedByName) {
  for (const char* options : {"temperature: 0", "temperature: -1", "temperature: \"hot\""}) {
    absl::Status s = MakeDetector("energy", {.options = options}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << options;
    EXPECT_THAT(s.message(), ::testing::HasSubstr("'temperature'")) << options;
  }
}

}  // namespace
}  // namespace fedcl::ood
