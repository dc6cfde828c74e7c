#include "core/fl/update_validation.h"

#include <cmath>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

bool Contains(const absl::Status& status, absl::string_view needle) {
  return status.message().find(needle) != absl::string_view::npos;
}

TEST(EchoInputTest, ShortTextIsKeptAndLongTextIsCutWithItsSize) {
  EXPECT_EQ(EchoInput("head"), "head");
  EXPECT_EQ(EchoInput(std::string(64, 'a')), std::string(64, 'a'));
  const std::string echoed = EchoInput(std::string(40000, 'a'));
  EXPECT_EQ(echoed, std::string(64, 'a') + "\xe2\x80\xa6 (40000 bytes)");
  EXPECT_EQ(EchoInput("abcdef", 3), "abc\xe2\x80\xa6 (6 bytes)");
}

TEST(EchoInputTest, NoCharacterIsCutInHalf) {
  // 'x' then 2-byte characters: byte 64 is the second byte of one, so the cut backs up to 63.
  std::string text = "x";
  while (text.size() < 100) text += "\xc3\xa9";
  const std::string echoed = EchoInput(text);
  EXPECT_EQ(echoed.substr(0, 63), text.substr(0, 63));
  EXPECT_EQ(echoed.substr(63, 3), "\xe2\x80\xa6");
}

TEST(ValidateTrainingReportTest, AcceptsSaneCountsAndRefusesOthersNamingTheField) {
  EXPECT_TRUE(ValidateTrainingReport(0, 0, 0.0).ok());
  EXPECT_TRUE(ValidateTrainingReport(kMaxNumSamples, kMaxLocalSteps, -kMaxAbsLoss).ok());
  EXPECT_TRUE(ValidateTrainingReport(16, 5, 2.3).ok());
  struct Case {
    int64_t samples, steps;
    double loss;
    const char* field;
  } const cases[] = {
      {-1, 1, 0.5, "num_samples"},
      {int64_t{1} << 62, 1, 0.5, "num_samples"},
      {kMaxNumSamples + 1, 1, 0.5, "num_samples"},
      {16, -1, 0.5, "local_steps"},
      {16, std::numeric_limits<int64_t>::max(), 0.5, "local_steps"},
      {16, 1, 1e308, "loss"},
      {16, 1, -1e10, "loss"},
      {16, 1, std::nan(""), "loss"},
      {16, 1, std::numeric_limits<double>::infinity(), "loss"},
  };
  for (const Case& c : cases) {
    const absl::Status status = ValidateTrainingReport(c.samples, c.steps, c.loss);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_TRUE(Contains(status, c.field)) << status;
  }
}

TEST(LayoutNumValuesTest, CountsWithoutOverflow) {
  EXPECT_EQ(*LayoutNumValues({{"w", {4, 10}}, {"b", {4}}}), 44);
  EXPECT_EQ(*LayoutNumValues({}), 0);
  EXPECT_EQ(*LayoutNumValues({{"s", {}}}), 1) << "a scalar";
  // [2^32, 2^32 - 1] wraps to a negative int64 when multiplied naively.
  const absl::StatusOr<int64_t> wrapped =
      LayoutNumValues({{"w", {int64_t{1} << 32, (int64_t{1} << 32) - 1}}});
  EXPECT_EQ(wrapped.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(wrapped.status(), "'w'")) << wrapped.status();
  EXPECT_EQ(LayoutNumValues({{"w", {1 << 20, 1 << 20, 1 << 20, 1 << 20}}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Each tensor fits, the sum does not.
  EXPECT_EQ(
      LayoutNumValues({{"a", {int64_t{1} << 61, 2}}, {"b", {int64_t{1} << 61, 2}}}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(LayoutNumValues({{"w", {4, 0}}}).status(), "not positive"));
  EXPECT_TRUE(Contains(LayoutNumValues({{"w", {-3}}}).status(), "not positive"));
}

TEST(ValidateDeltaLayoutTest, ComparesNamesAndShapesAndEchoesShortly) {
  nn::ParameterSet module("head");
  module.Add("w", {4, 10}, true);
  module.Add("b", {4}, true);
  EXPECT_TRUE(ValidateDeltaLayout("head", {{"w", {4, 10}}, {"b", {4}}}, module).ok());
  EXPECT_TRUE(Contains(ValidateDeltaLayout("head", {{"w", {4, 10}}}, module), "1 tensors"));
  EXPECT_TRUE(
      Contains(ValidateDeltaLayout("head", {{"w", {10, 4}}, {"b", {4}}}, module), "[10, 4]"));
  const std::string long_name(40000, 'n');
  const absl::Status status =
      ValidateDeltaLayout(long_name, {{long_name, {4, 10}}, {"b", {4}}}, module);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(status.message().size(), 300u) << "both names are echoed cut short";
  EXPECT_TRUE(Contains(status, "(40000 bytes)"));
  // Shapes are only compared: an overflowing one is just a mismatch.
  EXPECT_EQ(ValidateDeltaLayout(
                "head", {{"w", {int64_t{1} << 32, (int64_t{1} << 32) - 1}}, {"b", {4}}}, module)
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedcl::fl
