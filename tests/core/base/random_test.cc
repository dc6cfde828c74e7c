#include "core/base/random.h"

#include <cmath>
#include <numeric>

#include "gtest/gtest.h"

namespace fedcl::base {
namespace {

TEST(RngTest, SameSeedGivesSameSequence) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.NextU64();
    EXPECT_EQ(x, b.NextU64());
    differs |= x != c.NextU64();
  }
  EXPECT_TRUE(differs);
}

TEST(RngTest, StreamsDependOnEveryKeyPartAndItsOrder) {
  uint64_t base = Rng::ForStream(7, {1, 2}).NextU64();
  EXPECT_EQ(base, Rng::ForStream(7, {1, 2}).NextU64());
  EXPECT_NE(base, Rng::ForStream(7, {2, 1}).NextU64());
  EXPECT_NE(base, Rng::ForStream(8, {1, 2}).NextU64());
  EXPECT_NE(base, Rng::ForStream(7, {1, 3}).NextU64());
}

TEST(RngTest, UniformIntIsUnbiasedOverSmallRange) {
  Rng rng(1);
  std::vector<int> counts(7, 0);
  const int draws = 70000;
  for (int i = 0; i < draws; ++i) ++counts[rng.UniformInt(7)];
  for (int c : counts) EXPECT_NEAR(c, draws / 7.0, 5 * std::sqrt(draws / 7.0));
}

TEST(RngTest, NormalHasUnitMomentsAndGammaHasItsMean) {
  Rng rng(3);
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    double x = rng.Normal();
    sum += x;
    sum_sq += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum_sq / n, 1.0, 0.01);
  for (double shape : {0.1, 0.5, 1.0, 3.0}) {
    double total = 0;
    for (int i = 0; i < n; ++i) total += rng.Gamma(shape);
    EXPECT_NEAR(total / n, shape, 0.02 * std::max(1.0, shape)) << "shape " << shape;
  }
}

TEST(RngTest, DirichletSumsToOneWithMeanOneOverK) {
  Rng rng(5);
  std::vector<double> mean(10, 0.0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    std::vector<double> d = rng.Dirichlet(0.1, 10);
    EXPECT_NEAR(std::accumulate(d.begin(), d.end(), 0.0), 1.0, 1e-9);
    for (int k = 0; k < 10; ++k) mean[k] += d[k] / draws;
  }
  for (double m : mean) EXPECT_NEAR(m, 0.1, 0.01);
}

TEST(RngTest, ShuffleIsAPermutation) {
  Rng rng(9);
  std::vector<int> v(100);
  std::iota(v.begin(), v.end(), 0);
  rng.Shuffle(v);
  std::vector<int> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_NE(v[0] + v[1] * 100, 0 + 1 * 100);
}

}  // namespace
}  // namespace fedcl::base
