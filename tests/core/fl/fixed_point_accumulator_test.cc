#include "core/fl/fixed_point_accumulator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "core/base/random.h"
#include "gtest/gtest.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {
namespace {

using Acc = FixedPointAccumulator;

// 3 full chunks and a partial one, so chunk boundaries and the tail are exercised.
constexpr int64_t kSize = 3 * Acc::kChunkSize + 934;

struct Term {
  std::vector<float> values;
  double weight;
};

// Values spread over magnitudes 1e-4..10 (like deltas of different layers), weights in ±[0.1, 20].
std::vector<Term> RandomTerms(int count, int64_t size, uint64_t seed) {
  base::Rng rng(seed);
  std::vector<Term> terms(count);
  for (Term& t : terms) {
    t.values.resize(size);
    const double scale = std::pow(10.0, rng.Uniform(-4, 1));
    for (float& v : t.values) v = static_cast<float>(rng.Normal(0, scale));
    t.weight = rng.Uniform(0.1, 20) * (rng.Bernoulli(0.2) ? -1 : 1);
  }
  return terms;
}

Acc SumInOrder(const std::vector<Term>& terms, const std::vector<int>& order,
               tbb::task_arena* arena) {
  Acc acc(terms[0].values.size(), arena);
  for (int i : order) EXPECT_TRUE(acc.Add(terms[i].values, terms[i].weight).ok());
  return acc;
}

std::vector<int> Iota(int n) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  return order;
}

TEST(FixedPointAccumulatorTest, EachTermIsRoundedToTheNearestUnitOnce) {
  const std::vector<Term> terms = RandomTerms(10, kSize, 1);
  Acc acc(kSize);
  std::vector<int64_t> expected(kSize, 0);
  for (const Term& t : terms) {
    ASSERT_TRUE(acc.Add(t.values, t.weight).ok());
    const double ws = std::ldexp(t.weight, Acc::kFractionBits);
    for (int64_t i = 0; i < kSize; ++i) expected[i] += std::llrint(ws * t.values[i]);
  }
  EXPECT_TRUE(std::equal(expected.begin(), expected.end(), acc.units().begin()));
}

TEST(FixedPointAccumulatorTest, SumMatchesDoubleReferenceToResolution) {
  const std::vector<Term> terms = RandomTerms(50, kSize, 2);
  const Acc acc = SumInOrder(terms, Iota(50), nullptr);
  std::vector<double> reference(kSize, 0.0), magnitude(kSize, 0.0);
  for (const Term& t : terms) {
    for (int64_t i = 0; i < kSize; ++i) {
      reference[i] += t.weight * t.values[i];
      magnitude[i] += std::fabs(t.weight * t.values[i]);
    }
  }
  std::vector<float> out(kSize, 0.0f);
  const double scale = 0.01;
  ASSERT_TRUE(acc.ReadInto(absl::MakeSpan(out), scale).ok());
  for (int64_t i = 0; i < kSize; ++i) {
    // Half a unit per term, plus the reference's own double rounding.
    const double tolerance = 50 * 0.5 * Acc::kResolution + 1e-15 * magnitude[i];
    ASSERT_NEAR(acc.value(i), reference[i], tolerance) << "element " << i;
    const float expected = static_cast<float>(scale * reference[i]);
    const float ulp = std::nextafter(std::fabs(expected), INFINITY) - std::fabs(expected);
    ASSERT_NEAR(out[i], expected, ulp) << "element " << i;
  }
}

TEST(FixedPointAccumulatorTest, OrderAndThreadCountDoNotChangeTheBits) {
  const std::vector<Term> terms = RandomTerms(50, kSize, 3);
  const Acc reference = SumInOrder(terms, Iota(50), nullptr);
  std::vector<float> reference_out(kSize, 0.5f);
  ASSERT_TRUE(reference.ReadInto(absl::MakeSpan(reference_out), 0.125).ok());
  base::Rng rng(4);
  for (int threads : {1, 2, 4}) {
    tbb::task_arena arena(threads);
    std::vector<int> order = Iota(50);
    rng.Shuffle(order);
    const Acc acc = SumInOrder(terms, order, &arena);
    EXPECT_TRUE(std::equal(acc.units().begin(), acc.units().end(), reference.units().begin()))
        << threads << " threads";
    std::vector<float> out(kSize, 0.5f);
    ASSERT_TRUE(acc.ReadInto(absl::MakeSpan(out), 0.125).ok());
    EXPECT_EQ(0, std::memcmp(out.data(), reference_out.data(),  // NOLINT(bugprone-*): bits
                             kSize * sizeof(float)));

    // Split across two partial sums, merged.
    Acc first(kSize, &arena), second(kSize, &arena);
    for (int k = 0; k < 50; ++k) {
      ASSERT_TRUE(
          (k % 3 == 0 ? first : second).Add(terms[order[k]].values, terms[order[k]].weight).ok());
    }
    ASSERT_TRUE(second.AddAccumulator(first).ok());
    EXPECT_TRUE(
        std::equal(second.units().begin(), second.units().end(), reference.units().begin()));
  }
}

TEST(FixedPointAccumulatorTest, SubtractUndoesAddAndAddDifferenceIsBoth) {
  const std::vector<Term> terms = RandomTerms(3, kSize, 5);
  tbb::task_arena arena(2);
  Acc acc(kSize, &arena);
  ASSERT_TRUE(acc.Add(terms[0].values, terms[0].weight).ok());
  const std::vector<int64_t> before(acc.units().begin(), acc.units().end());
  ASSERT_TRUE(acc.Add(terms[1].values, 3.7).ok());
  ASSERT_TRUE(acc.Subtract(terms[1].values, 3.7).ok());
  EXPECT_TRUE(std::equal(before.begin(), before.end(), acc.units().begin()));

  Acc both(kSize, &arena);
  ASSERT_TRUE(both.AddDifference(terms[1].values, terms[2].values, 1.5).ok());
  Acc separately(kSize, &arena);
  ASSERT_TRUE(separately.Add(terms[1].values, 1.5).ok());
  ASSERT_TRUE(separately.Subtract(terms[2].values, 1.5).ok());
  EXPECT_TRUE(std::equal(both.units().begin(), both.units().end(), separately.units().begin()));
}

TEST(FixedPointAccumulatorTest, RoundsTiesToEvenOnBothConversionPaths) {
  // Elements 1 and 2 are 0.5 and 1.5 units after weighting. Element 0 decides the chunk's path:
  // small, the vectorised magic-number path; large (|w·v| >= 2^15), the scalar llrint path.
  for (float big : {0.0f, 1.0f}) {
    const double weight = big == 0.0f ? 1.0 : 65536.0;
    std::vector<float> v(8, 0.0f);
    v[0] = big;
    v[1] = static_cast<float>(std::ldexp(0.5, -Acc::kFractionBits) / weight);
    v[2] = static_cast<float>(std::ldexp(1.5, -Acc::kFractionBits) / weight);
    v[3] = -v[2];
    Acc acc(8);
    ASSERT_TRUE(acc.Add(v, weight).ok());
    EXPECT_EQ(acc.units()[0], std::llrint(std::ldexp(weight * big, Acc::kFractionBits)));
    EXPECT_EQ(acc.units()[1], 0);
    EXPECT_EQ(acc.units()[2], 2);
    EXPECT_EQ(acc.units()[3], -2);
  }
}

TEST(FixedPointAccumulatorTest, OverflowIsRefusedAndLeavesTheSumUnchanged) {
  const std::vector<Term> terms = RandomTerms(5, kSize, 6);
  tbb::task_arena arena(2);
  Acc acc(kSize, &arena);
  for (const Term& t : terms) ASSERT_TRUE(acc.Add(t.values, t.weight).ok());
  const Acc snapshot = acc;
  // Large only in the last chunk: the chunks before it are added, then taken back out.
  std::vector<float> big = terms[0].values;
  big[kSize - 1] = 1e6f;
  const absl::Status status = acc.Add(big, 100.0);
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << status;
  EXPECT_NE(status.message().find(std::to_string(3 * Acc::kChunkSize)), std::string::npos)
      << status;
  EXPECT_TRUE(std::equal(acc.units().begin(), acc.units().end(), snapshot.units().begin()));
  for (int64_t i = 0; i < kSize; i += Acc::kChunkSize)
    EXPECT_EQ(acc.bound_at(i), snapshot.bound_at(i));
  // Bounds accumulate: 67 adds of 1e6 fit (6.7e7 <= 2^26 ≈ 6.71e7), the next one does not.
  Acc filling(16);
  std::vector<float> ones(16, 1.0f);
  for (int k = 0; k < 67; ++k) ASSERT_TRUE(filling.Add(ones, 1e6).ok()) << k;
  EXPECT_EQ(filling.Add(ones, 1e6).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(filling.value(0), 67e6);
  // ...and Subtract raises the bound too: the sum is back to 0 but the bound is not.
  EXPECT_EQ(filling.Subtract(ones, 1e6).code(), absl::StatusCode::kOutOfRange);
}

// A refused Add must take back every chunk it already added with the kernel that added it. Here
// most chunks take the scalar path (|w·v| >= 2^15, past the magic-number range), so undoing them
// with the vectorised kernel would leave garbage in the large elements. The reference is an
// accumulator fed the same earlier terms that never saw the refused call.
TEST(FixedPointAccumulatorTest, RefusedAddOfLargeValuesLeavesTheSumBitIdentical) {
  constexpr int64_t kChunks = (kSize + Acc::kChunkSize - 1) / Acc::kChunkSize;
  base::Rng rng(11);
  tbb::task_arena arena(2);
  for (int trial = 0; trial < 8; ++trial) {
    SCOPED_TRACE(::testing::Message() << "trial " << trial);
    tbb::task_arena* const maybe_arena = trial % 2 == 0 ? &arena : nullptr;
    Acc acc(kSize, maybe_arena), reference(kSize);
    for (const Term& t : RandomTerms(3, kSize, 100 + trial)) {
      ASSERT_TRUE(acc.Add(t.values, t.weight).ok());
      ASSERT_TRUE(reference.Add(t.values, t.weight).ok());
    }
    // One chunk refuses (overflow or NaN); of the others, at least one is large (scalar path).
    const double weight = rng.Uniform(200, 2000) * (rng.Bernoulli(0.5) ? -1 : 1);
    const int64_t refused = static_cast<int64_t>(rng.UniformInt(kChunks));
    const int64_t forced_large = (refused + 1 + rng.UniformInt(kChunks - 1)) % kChunks;
    std::vector<float> plus(kSize), minus(kSize);
    int large_chunks = 0;
    for (int64_t c = 0; c < kChunks; ++c) {
      const bool large = c == forced_large || rng.Bernoulli(0.6);
      const double scale = large ? rng.Uniform(20, 200) : rng.Uniform(1e-4, 1e-2);
      const int64_t begin = c * Acc::kChunkSize, end = std::min(begin + Acc::kChunkSize, kSize);
      float max_abs = 0;
      for (int64_t i = begin; i < end; ++i) {
        plus[i] = static_cast<float>(rng.Normal(0, scale));
        minus[i] = static_cast<float>(rng.Normal(0, scale));
        max_abs = std::max(max_abs, std::fabs(plus[i]));
      }
      if (large && c != refused) {
        ASSERT_GE(std::fabs(weight) * max_abs, 0x1p15) << "chunk " << c << " is not large";
        ++large_chunks;
      }
    }
    ASSERT_GE(large_chunks, 1);
    const bool nan = trial % 4 >= 2;
    const int64_t bad =
        refused * Acc::kChunkSize + static_cast<int64_t>(rng.UniformInt(std::min(
                                        Acc::kChunkSize, kSize - refused * Acc::kChunkSize)));
    plus[bad] = nan ? std::numeric_limits<float>::quiet_NaN() : 1e6f;
    const bool difference = trial % 3 == 0;
    const absl::Status status =
        difference ? acc.AddDifference(plus, minus, weight) : acc.Add(plus, weight);
    EXPECT_EQ(status.code(),
              nan ? absl::StatusCode::kInvalidArgument : absl::StatusCode::kOutOfRange)
        << status;
    ASSERT_TRUE(std::equal(acc.units().begin(), acc.units().end(), reference.units().begin()))
        << "refused chunk " << refused << ", " << large_chunks << " large chunks"
        << (difference ? ", AddDifference" : ", Add");
    for (int64_t i = 0; i < kSize; i += Acc::kChunkSize) {
      EXPECT_EQ(acc.bound_at(i), reference.bound_at(i)) << "chunk " << i / Acc::kChunkSize;
    }
    // With the offending element made harmless, the same add is accepted by both alike.
    plus[bad] = 0.0f;
    ASSERT_TRUE(acc.AddDifference(plus, minus, weight).ok());
    ASSERT_TRUE(reference.AddDifference(plus, minus, weight).ok());
    EXPECT_TRUE(std::equal(acc.units().begin(), acc.units().end(), reference.units().begin()));
  }
}

TEST(FixedPointAccumulatorTest, TightenResetsBoundsToTheActualMagnitude) {
  Acc acc(16);
  std::vector<float> ones(16, 1.0f);
  for (int k = 0; k < 33; ++k) {
    ASSERT_TRUE(acc.Add(ones, 1e6).ok());
    ASSERT_TRUE(acc.Subtract(ones, 1e6).ok());
  }
  EXPECT_EQ(acc.Add(ones, 2e6).code(), absl::StatusCode::kOutOfRange);  // bound 6.6e7 + 2e6
  acc.Tighten();
  EXPECT_EQ(acc.bound_at(0), 0.0);
  ASSERT_TRUE(acc.Add(ones, 1e6).ok());
  acc.Tighten();
  EXPECT_EQ(acc.bound_at(0), 1e6);
}

TEST(FixedPointAccumulatorTest, NonFiniteValuesAndWeightsAreRejected) {
  const std::vector<Term> terms = RandomTerms(2, kSize, 7);
  tbb::task_arena arena(2);
  Acc acc(kSize, &arena);
  ASSERT_TRUE(acc.Add(terms[0].values, 1.0).ok());
  const Acc snapshot = acc;
  std::vector<float> bad = terms[1].values;
  bad[2 * Acc::kChunkSize + 5] = std::numeric_limits<float>::quiet_NaN();
  absl::Status status = acc.Add(bad, 1.0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find(std::to_string(2 * Acc::kChunkSize + 5)), std::string::npos)
      << status;
  bad[2 * Acc::kChunkSize + 5] = 0.0f;
  bad[7] = -INFINITY;
  EXPECT_EQ(acc.AddDifference(terms[1].values, bad, 1.0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.Add(terms[1].values, INFINITY).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.Add(terms[1].values, std::nan("")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(std::equal(acc.units().begin(), acc.units().end(), snapshot.units().begin()));
}

TEST(FixedPointAccumulatorTest, SizeMismatchesAreRejected) {
  Acc acc(10);
  std::vector<float> nine(9, 1.0f), ten(10, 1.0f);
  EXPECT_EQ(acc.Add(nine, 1.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.AddDifference(ten, nine, 1.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.AddAccumulator(Acc(9)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.ReadInto(absl::MakeSpan(nine), 1.0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(acc.ReadInto(absl::MakeSpan(ten), INFINITY).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FixedPointAccumulatorTest, ReadCombinationAddsBothScaledSums) {
  const std::vector<Term> terms = RandomTerms(2, kSize, 8);
  tbb::task_arena arena(2);
  Acc a(kSize, &arena), b(kSize, &arena);
  ASSERT_TRUE(a.Add(terms[0].values, 2.0).ok());
  ASSERT_TRUE(b.Add(terms[1].values, 1.0).ok());
  std::vector<float> out(kSize, 1.0f);
  ASSERT_TRUE(Acc::ReadCombinationInto(absl::MakeSpan(out), a, 0.25, b, -0.5).ok());
  for (int64_t i = 0; i < kSize; ++i) {
    const double expected = 1.0 + 0.25 * a.value(i) - 0.5 * b.value(i);
    ASSERT_EQ(out[i], static_cast<float>(expected)) << i;
  }
}

TEST(FixedPointAccumulatorTest, DrainIsReadThenClear) {
  const std::vector<Term> terms = RandomTerms(3, kSize, 10);
  tbb::task_arena arena(2);
  Acc drained(kSize, &arena);
  for (const Term& t : terms) ASSERT_TRUE(drained.Add(t.values, t.weight).ok());
  Acc read = drained;
  std::vector<float> a(kSize, 0.25f), b(kSize, 0.25f);
  ASSERT_TRUE(read.ReadInto(absl::MakeSpan(a), 0.01).ok());
  read.Clear();
  ASSERT_TRUE(drained.DrainInto(absl::MakeSpan(b), 0.01).ok());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
  EXPECT_TRUE(std::all_of(drained.units().begin(), drained.units().end(),
                          [](int64_t u) { return u == 0; }));
  for (int64_t i = 0; i < kSize; i += Acc::kChunkSize) EXPECT_EQ(drained.bound_at(i), 0.0);
  EXPECT_EQ(drained.DrainInto(absl::MakeSpan(b).subspan(1), 1.0).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FixedPointAccumulatorTest, ClearZeroesSumAndBoundsAndMemoryIsEightBytesPerElement) {
  const std::vector<Term> terms = RandomTerms(1, kSize, 9);
  Acc acc(kSize);
  ASSERT_TRUE(acc.Add(terms[0].values, 1.0).ok());
  acc.Clear();
  for (int64_t i = 0; i < kSize; ++i) ASSERT_EQ(acc.units()[i], 0);
  EXPECT_EQ(acc.bound_at(0), 0.0);
  EXPECT_GE(acc.memory_bytes(), 8 * kSize);
  EXPECT_LT(acc.memory_bytes(), 8 * kSize + 4096);
}

}  // namespace
}  // namespace fedcl::fl
