#include "core/fl/update_validation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/base/random.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

bool Contains(const absl::Status& status, absl::string_view needle) {
  return status.message().find(needle) != absl::string_view::npos;
}

// The definition, written independently of the vector kernel: lanes by index within each delta,
// products and sums in double, the lanes added in a fixed tree.
double ReferenceSquaredNorm(const std::vector<std::vector<float>>& deltas,
                            std::vector<float>* largest) {
  double lanes[8] = {};
  for (const std::vector<float>& delta : deltas) {
    float peak = 0.0f;
    for (size_t i = 0; i < delta.size(); ++i) {
      lanes[i % 8] += static_cast<double>(delta[i]) * static_cast<double>(delta[i]);
      peak = std::max(peak, std::fabs(delta[i]));
    }
    largest->push_back(peak);
  }
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

TEST(SquaredNormTest, EqualsTheLaneDefinitionBitForBitAtAnyAddressAndLength) {
  base::Rng rng(17);
  for (int trial = 0; trial < 40; ++trial) {
    const int num_modules = 1 + static_cast<int>(rng.UniformInt(3));
    std::vector<std::vector<float>> deltas;
    for (int m = 0; m < num_modules; ++m) {
      std::vector<float> delta(rng.UniformInt(70));
      const double spread = std::exp(rng.Uniform(-8.0, 8.0));
      for (float& v : delta) v = static_cast<float>(rng.Normal(0.3, spread));
      deltas.push_back(std::move(delta));
    }
    std::vector<float> want_largest;
    const double want = ReferenceSquaredNorm(deltas, &want_largest);
    // The same values at every offset from a 32-byte boundary.
    for (size_t offset = 0; offset < 8; ++offset) {
      std::vector<std::vector<float>> shifted(deltas.size());
      UpdateSubmission update;
      for (size_t m = 0; m < deltas.size(); ++m) {
        shifted[m].assign(offset, 0.0f);
        shifted[m].insert(shifted[m].end(), deltas[m].begin(), deltas[m].end());
        update.modules.push_back(
            ModuleDelta{"m", 0, {}, absl::MakeSpan(shifted[m]).subspan(offset)});
      }
      std::vector<float> largest;
      const double got = SquaredNorm(update, &largest);
      ASSERT_EQ(got, want) << "trial " << trial << ", offset " << offset;
      ASSERT_EQ(largest, want_largest) << "trial " << trial << ", offset " << offset;
    }
  }
}

TEST(SquaredNormTest, SkippedModulesStayOutUnlessNotFiniteAndNonFiniteValuesShow) {
  base::Rng rng(23);
  std::vector<float> kept(37), skipped(29);
  for (float& v : kept) v = static_cast<float>(rng.Normal());
  for (float& v : skipped) v = static_cast<float>(rng.Normal(5.0, 2.0));
  UpdateSubmission update;
  update.modules.push_back(ModuleDelta{"kept", 0, {}, absl::MakeSpan(kept)});
  update.modules.push_back(ModuleDelta{"skipped", 0, {}, absl::MakeSpan(skipped)});
  const std::vector<bool> skip = {false, true};
  std::vector<float> want_largest;
  const double want = ReferenceSquaredNorm({kept}, &want_largest);
  std::vector<float> largest;
  EXPECT_EQ(SquaredNorm(update, &largest, &skip), want);
  ASSERT_EQ(largest.size(), 2u);
  EXPECT_EQ(largest[0], want_largest[0]);
  float skipped_peak = 0.0f;
  for (float v : skipped) skipped_peak = std::max(skipped_peak, std::fabs(v));
  EXPECT_EQ(largest[1], skipped_peak);
  // A non-finite value anywhere, in a vector block or in a tail, skipped or not.
  for (size_t at : {size_t{3}, size_t{36}}) {
    const float saved = kept[at];
    kept[at] = std::numeric_limits<float>::infinity();
    EXPECT_FALSE(std::isfinite(SquaredNorm(update, nullptr, &skip))) << at;
    kept[at] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(std::isfinite(SquaredNorm(update, nullptr, &skip))) << at;
    kept[at] = saved;
  }
  skipped[11] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(std::isfinite(SquaredNorm(update, nullptr, &skip)));
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
