#include "core/fl/compression.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "Eigen/Core"
#include "core/base/random.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

using Codec = CompressionSpec::Codec;

CompressionSpec Spec(absl::string_view text) {
  absl::StatusOr<CompressionSpec> spec = ParseCompressionSpec(text);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : CompressionSpec{};
}

// Values over several orders of magnitude, with a random offset: no block is all alike.
std::vector<float> RandomValues(base::Rng& rng, size_t n) {
  std::vector<float> v(n);
  const double offset = rng.Normal(0.0, 0.01);
  for (float& x : v) {
    x = static_cast<float>(offset + rng.Normal() * std::exp(rng.Uniform(-6.0, 0.0)));
  }
  return v;
}

std::vector<float> Decoded(const CompressedValues& c) {
  std::vector<float> out(static_cast<size_t>(c.size), -1.0f);
  absl::Status s = Decompress(c, absl::MakeSpan(out));
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(CompressionSpecTest, ParsesEveryCodecAndRefusesBadOnesNamingThePart) {
  EXPECT_EQ(Spec("float32").codec, Codec::kFloat32);
  EXPECT_EQ(Spec("float16").codec, Codec::kFloat16);
  EXPECT_EQ(Spec("int8").block_size, 256);
  EXPECT_EQ(Spec("int8:4096").block_size, 4096);
  const CompressionSpec topk = Spec("topk:0.02:128");
  EXPECT_EQ(topk.codec, Codec::kTopK);
  EXPECT_DOUBLE_EQ(topk.keep_fraction, 0.02);
  EXPECT_EQ(topk.block_size, 128);
  for (const char* text : {"float32", "float16", "int8:256", "topk:0.05:256"})
    EXPECT_EQ(CompressionSpecText(Spec(text)), text);
  struct Bad {
    const char* text;
    const char* names;
  };
  for (const Bad& bad : {Bad{"int4", "not one of"}, Bad{"int8:3", "block is 3"},
                         Bad{"int8:x", "block 'x'"}, Bad{"topk", "not one of"},
                         Bad{"topk:0", "fraction of 0"}, Bad{"topk:1.5", "fraction of 1.5"},
                         Bad{"topk:abc", "fraction 'abc'"}, Bad{"float16:8", "not one of"}}) {
    absl::StatusOr<CompressionSpec> spec = ParseCompressionSpec(bad.text);
    ASSERT_FALSE(spec.ok()) << bad.text;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(spec.status().message().find(bad.names), std::string::npos) << spec.status();
  }
}

TEST(CompressionTest, Float16RoundsToTheNearestHalfAndClampsToItsRange) {
  // Every finite half is kept exactly.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    if ((bits & 0x7c00) == 0x7c00) continue;
    const float f = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(uint16_t(bits)));
    const CompressedValues c = Compress(absl::MakeConstSpan(&f, 1), Spec("float16"));
    ASSERT_EQ(Decoded(c)[0], f) << bits;
  }
  // Others to within half a unit in the last place of a half (2^-11 relative, normal range).
  base::Rng rng(5);
  std::vector<float> v = RandomValues(rng, 4000);
  v.push_back(1e6f);
  v.push_back(-7e4f);
  const std::vector<float> out = Decoded(Compress(v, Spec("float16")));
  for (size_t i = 0; i + 2 < v.size(); ++i) {
    if (std::abs(v[i]) < 6.2e-5f) continue;  // subnormal halves: absolute steps
    EXPECT_LE(std::abs(out[i] - v[i]), std::abs(v[i]) * 0x1p-11f) << v[i];
  }
  EXPECT_EQ(out[out.size() - 2], 65504.0f);
  EXPECT_EQ(out.back(), -65504.0f);
}

TEST(CompressionTest, Int8IsWithinHalfAStepOfEveryValueAndKeepsEachBlocksLargest) {
  base::Rng rng(6);
  for (int32_t block : {8, 100, 256}) {
    const std::vector<float> v = RandomValues(rng, 1001);
    CompressionSpec spec = Spec("int8");
    spec.block_size = block;
    const CompressedValues c = Compress(v, spec);
    EXPECT_EQ(c.bytes(), 1001 + 4 * ((1001 + block - 1) / block));
    const std::vector<float> out = Decoded(c);
    for (size_t b = 0; b * block < v.size(); ++b) {
      const size_t end = std::min(v.size(), (b + 1) * block);
      float peak = 0.0f;
      for (size_t i = b * block; i < end; ++i) peak = std::max(peak, std::abs(v[i]));
      const float step = peak / 127.0f;
      for (size_t i = b * block; i < end; ++i) {
        ASSERT_LE(std::abs(out[i] - v[i]), step * 0.5f * (1.0f + 1e-5f)) << i;
        if (std::abs(v[i]) == peak) EXPECT_NEAR(out[i], v[i], peak * 1e-6f);
      }
    }
  }
  std::vector<float> zeros(20, 0.0f);
  for (float x : Decoded(Compress(zeros, Spec("int8:8")))) EXPECT_EQ(x, 0.0f);
}

TEST(CompressionTest, TopKKeepsExactlyTheLargestMagnitudes) {
  base::Rng rng(7);
  std::vector<float> v = RandomValues(rng, 3000);
  v[17] = v[2900] = 50.0f;  // a tie, both kept
  const CompressionSpec spec = Spec("topk:0.02:64");
  const CompressedValues c = Compress(v, spec);
  const int64_t k = TopKCount(spec, 3000);
  ASSERT_EQ(k, 60);
  // Index gaps as varints: one byte below 128, two below 2^14 (none here is larger).
  int64_t gap_bytes = 0;
  for (size_t j = 0; j < c.indices.size(); ++j) {
    const uint32_t gap = j == 0 ? c.indices[0] : c.indices[j] - c.indices[j - 1];
    gap_bytes += gap < 128 ? 1 : 2;
  }
  EXPECT_EQ(c.bytes(), gap_bytes + 60 + 4 * 1);
  std::vector<float> magnitudes(v.size());
  for (size_t i = 0; i < v.size(); ++i) magnitudes[i] = std::abs(v[i]);
  std::vector<float> sorted = magnitudes;
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  const float threshold = sorted[static_cast<size_t>(k) - 1];
  const std::vector<float> out = Decoded(c);
  int kept = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (magnitudes[i] >= threshold) {
      ++kept;
      EXPECT_NE(out[i], 0.0f) << i;
      EXPECT_LE(std::abs(out[i] - v[i]), 50.0f / 127.0f) << i;
    } else {
      EXPECT_EQ(out[i], 0.0f) << i;
    }
  }
  EXPECT_EQ(kept, k);
  // Keeping every value is int8 over the same blocks.
  const std::vector<float> all = Decoded(Compress(v, Spec("topk:1:64")));
  EXPECT_EQ(all, Decoded(Compress(v, Spec("int8:64"))));
}

// §6.5, test 2: Σ_t D(c_t) + e_T = Σ_t Δ_t. Nothing learned is lost, only delayed.
TEST(CompressionTest, ErrorFeedbackLosesNothingOverManyRounds) {
  for (const char* text : {"float16", "int8:32", "topk:0.05:32"}) {
    SCOPED_TRACE(text);
    base::Rng rng(11);
    const size_t d = 500;
    std::vector<float> residual(d, 0.0f), decoded(d);
    std::vector<double> sent(d, 0.0), learned(d, 0.0), sent_without_feedback(d, 0.0);
    for (int t = 0; t < 60; ++t) {
      const std::vector<float> delta = RandomValues(rng, d);
      absl::StatusOr<CompressedValues> c = CompressWithFeedback(
          delta, absl::MakeSpan(residual), Spec(text), absl::MakeSpan(decoded));
      ASSERT_TRUE(c.ok()) << c.status();
      const std::vector<float> plain = Decoded(Compress(delta, Spec(text)));
      for (size_t i = 0; i < d; ++i) {
        sent[i] += decoded[i];
        learned[i] += delta[i];
        sent_without_feedback[i] += plain[i];
      }
    }
    double worst = 0.0, worst_without = 0.0, scale = 0.0;
    for (size_t i = 0; i < d; ++i) {
      worst = std::max(worst, std::abs(sent[i] + residual[i] - learned[i]));
      worst_without = std::max(worst_without, std::abs(sent_without_feedback[i] - learned[i]));
      scale = std::max(scale, std::abs(learned[i]));
    }
    EXPECT_LE(worst, 1e-5 * scale);
    EXPECT_GT(worst_without, 100 * worst);  // what error feedback is for
  }
}

TEST(CompressionTest, TheSameValuesAlwaysGiveTheSameBytes) {
  base::Rng rng(12);
  const std::vector<float> v = RandomValues(rng, 777);
  for (const char* text : {"float16", "int8:16", "topk:0.1:16"}) {
    const CompressedValues a = Compress(v, Spec(text)), b = Compress(v, Spec(text));
    EXPECT_EQ(a.halves, b.halves);
    EXPECT_EQ(a.quantized, b.quantized);
    EXPECT_EQ(a.indices, b.indices);
    ASSERT_EQ(a.scales.size(), b.scales.size());
    EXPECT_EQ(0, std::memcmp(a.scales.data(), b.scales.data(), a.scales.size() * sizeof(float)));
  }
}

TEST(CompressionTest, HostilePayloadsAreRefusedNamingWhatIsWrongAndWriteNothing) {
  base::Rng rng(13);
  const std::vector<float> v = RandomValues(rng, 100);
  const CompressedValues int8 = Compress(v, Spec("int8:16"));
  const CompressedValues topk = Compress(v, Spec("topk:0.1:8"));
  const CompressedValues half = Compress(v, Spec("float16"));
  struct Case {
    CompressedValues c;
    const char* names;
  };
  std::vector<Case> cases;
  auto add = [&](CompressedValues c, const char* names, auto&& damage) {
    damage(c);
    cases.push_back({std::move(c), names});
  };
  add(int8, "decodes to 101", [](CompressedValues& c) { c.size = 101; });
  add(int8, "quantized values", [](CompressedValues& c) { c.quantized.pop_back(); });
  add(int8, "scales", [](CompressedValues& c) { c.scales.push_back(1.0f); });
  add(int8, "scale 2 is -1", [](CompressedValues& c) { c.scales[2] = -1.0f; });
  add(int8, "scale 3 is nan",
      [](CompressedValues& c) { c.scales[3] = std::numeric_limits<float>::quiet_NaN(); });
  add(int8, "scale 0 is 3.4", [](CompressedValues& c) { c.scales[0] = 3.4e38f; });
  add(int8, "value 5 is -128", [](CompressedValues& c) { c.quantized[5] = -128; });
  add(int8, "block is 2", [](CompressedValues& c) { c.spec.block_size = 2; });
  add(topk, "index 3 is 100", [](CompressedValues& c) { c.indices[3] = 100; });
  add(topk, "indices must increase", [](CompressedValues& c) { c.indices[4] = c.indices[3]; });
  add(topk, "keeps 9 values", [](CompressedValues& c) {
    c.indices.pop_back();
    c.quantized.pop_back();
  });
  add(half, "value 7 is not finite", [](CompressedValues& c) { c.halves[7] = 0x7e00; });
  add(half, "float16 delta has 99", [](CompressedValues& c) { c.halves.pop_back(); });
  for (const Case& bad : cases) {
    std::vector<float> out(100, 42.0f);
    absl::Status status = Decompress(bad.c, absl::MakeSpan(out));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad.names;
    EXPECT_NE(status.message().find(bad.names), std::string::npos) << status;
    for (float x : out) ASSERT_EQ(x, 42.0f) << bad.names;
  }
  std::vector<float> residual(2, 0.0f), decoded(2);
  const std::vector<float> infinite = {1.0f, std::numeric_limits<float>::infinity()};
  EXPECT_EQ(CompressWithFeedback(infinite, absl::MakeSpan(residual), Spec("int8"),
                                 absl::MakeSpan(decoded))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(residual, std::vector<float>(2, 0.0f));
}

}  // namespace
}  // namespace fedcl::fl
