#include "core/cl/sema.h"

#include <cmath>

#include "core/cl/rd_detector.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::cl {
namespace {

// Samples on a 3-dimensional subspace of R^16 (plus small noise), and samples off it.
nn::Matrix Subspace(int n, base::Rng& rng, bool shifted) {
  nn::Matrix z = nn::Matrix::Zero(n, 16);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 3; ++j) {
      const float a = static_cast<float>(rng.Normal());
      z(i, j) += a;
      z(i, j + 3) += 0.5f * a;
    }
    for (int j = 0; j < 16; ++j) z(i, j) += 0.05f * static_cast<float>(rng.Normal());
    if (shifted) {
      for (int j = 8; j < 16; ++j) z(i, j) += static_cast<float>(rng.Normal());
    }
  }
  return z;
}

TEST(RepresentationDescriptorTest, MustCompress) {
  base::Rng rng(1);
  EXPECT_FALSE(RepresentationDescriptor::Create(16, 16, rng).ok());
  EXPECT_FALSE(RepresentationDescriptor::Create(16, 0, rng).ok());
  EXPECT_EQ(RepresentationDescriptor::Create(64, 16, rng)->num_parameters(),
            64 * 16 + 16 + 16 * 64 + 64);
}

TEST(RepresentationDescriptorTest, GradientsMatchFiniteDifferences) {
  base::Rng rng(2);
  RepresentationDescriptor rd = *RepresentationDescriptor::Create(6, 2, rng);
  rd.encoder_bias().setConstant(0.1f);
  nn::Matrix z(5, 6);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 6; ++j) z(i, j) = static_cast<float>(rng.Normal());
  nn::Matrix de, dd;
  Eigen::VectorXf dbe, dbd;
  rd.Gradients(z, &de, &dbe, &dd, &dbd);
  auto mean_loss = [&] {
    double sum = 0;
    for (float l : rd.Losses(z)) sum += l;
    return sum / 5.0;
  };
  auto check = [&](float& parameter, float analytic) {
    const float saved = parameter, h = 1e-2f;
    parameter = saved + h;
    const double plus = mean_loss();
    parameter = saved - h;
    const double minus = mean_loss();
    parameter = saved;
    const double numeric = (plus - minus) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 1e-3 + 1e-2 * std::abs(numeric));
  };
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 6; ++j) check(rd.encoder()(i, j), de(i, j));
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 2; ++j) check(rd.decoder()(i, j), dd(i, j));
  for (int i = 0; i < 2; ++i) check(rd.encoder_bias()[i], dbe[i]);
  for (int i = 0; i < 6; ++i) check(rd.decoder_bias()[i], dbd[i]);
}

// The defining property: trained on one distribution, the descriptor's z-score stays low on it
// and fires the expansion test on a shifted batch.
TEST(RepresentationDescriptorTest, ZScoreFiresOnAShiftNotOnTheTrainingDistribution) {
  base::Rng rng(3);
  RepresentationDescriptor rd = *RepresentationDescriptor::Create(16, 4, rng);
  LossRecords records;
  float first = 0, last = 0;
  for (int step = 0; step < 600; ++step) {
    const nn::Matrix batch = Subspace(32, rng, false);
    records.Add(rd.Losses(batch));  // training-mode forwards fill the records
    last = rd.TrainStep(batch, 0.05f);
    if (step == 0) first = last;
  }
  records.Freeze();
  EXPECT_LT(last, 0.2f * first);
  auto batch_z = [&](bool shifted) {
    std::vector<double> z;
    for (float l : rd.Losses(Subspace(128, rng, shifted))) z.push_back(records.ZScore(l));
    return z;
  };
  EXPECT_FALSE(ShouldExpand({batch_z(false)}, 2.0));
  EXPECT_TRUE(ShouldExpand({batch_z(true)}, 2.0));
}

TEST(LossRecordsTest, FifoAndZScoreArithmetic) {
  LossRecords records(4);
  records.Add({9, 1});
  EXPECT_EQ(records.ZScore(100), 0.0);  // two values or fewer: 0
  records.Add({2, 3, 4});               // 9 falls out: {1, 2, 3, 4}
  EXPECT_EQ(records.size(), 4);
  EXPECT_DOUBLE_EQ(records.mean(), 2.5);
  EXPECT_NEAR(records.stddev(), std::sqrt(5.0 / 3.0), 1e-12);  // unbiased
  EXPECT_NEAR(records.ZScore(5), 2.5 / std::sqrt(5.0 / 3.0), 1e-6);
  EXPECT_NEAR(records.ZScore(0), 2.5 / std::sqrt(5.0 / 3.0), 1e-6);  // |ℓ − μ|
  records.Freeze();
  records.Add({100});
  EXPECT_DOUBLE_EQ(records.mean(), 2.5);
}

TEST(ExpansionTest, EveryAdapterMustFindTheBatchUnusual) {
  EXPECT_TRUE(ShouldExpand({{3, 3}, {2.5, 2.6}}, 2.0));
  EXPECT_FALSE(ShouldExpand({{3, 3}, {1.5, 2.4}}, 2.0));  // adapter 1 knows it: mean 1.95
  EXPECT_FALSE(ShouldExpand({{3, 3}, {1.0, 2.0}}, 2.0));  // mean 1.5
  EXPECT_FALSE(ShouldExpand({}, 2.0));
}

TEST(ExpandableRouterTest, MixtureSumsToOneAndOldRowsStay) {
  base::Rng rng(4);
  ExpandableRouter router(8, rng);
  nn::Matrix z(3, 8);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 8; ++j) z(i, j) = static_cast<float>(rng.Normal());
  EXPECT_TRUE(router.Weights(z).isApprox(nn::Matrix::Ones(3, 1)));
  const nn::Matrix first_row = router.weights();
  EXPECT_EQ(router.AddExpert(rng), 1);
  EXPECT_EQ(router.AddExpert(rng), 2);
  EXPECT_EQ(router.weights().topRows(1), first_row);
  const nn::Matrix w = router.Weights(z);
  ASSERT_EQ(w.cols(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(w.row(i).sum(), 1.0f, 1e-6);
    EXPECT_GT(w.row(i).minCoeff(), 0.0f);
  }
}

}  // namespace
}  // namespace fedcl::cl

namespace fedcl::cl {
namespace {

TEST(RdDetectorTest, SeparatesAShiftedDistributionBehindTheOodInterface) {
  base::Rng rng(9);
  const nn::Matrix train = Subspace(1000, rng, false), held = Subspace(400, rng, false),
                   shifted = Subspace(400, rng, true);
  RdDetector detector({.bottleneck = 4, .epochs = 10});
  ASSERT_TRUE(detector.Fit({.layers = {&train}}, {}).ok());
  ASSERT_TRUE(detector.Calibrate({.layers = {&held}}).ok());
  const std::vector<float> id = *detector.Score({.layers = {&held}});
  const std::vector<float> ood = *detector.Score({.layers = {&shifted}});
  EXPECT_GT(*ood::Auroc(id, ood), 0.95);
  EXPECT_FALSE(detector.Score({}).ok());
}

}  // namespace
}  // namespace fedcl::cl

#include "core/cl/adapter_mixture.h"

namespace fedcl::cl {
namespace {

// Loss = Σ c ⊙ a(x) for a fixed random c: its gradients by finite differences.
TEST(AdapterMixtureTest, GrowingStartsFromAZeroFunctionAndGradientsMatchFiniteDifferences) {
  base::Rng rng(11);
  AdapterMixture mixture(5, 3, rng);
  const int batch = 2, tokens = 3;
  nn::Matrix x(batch * tokens, 5), c(batch * tokens, 5);
  for (int i = 0; i < x.rows(); ++i)
    for (int j = 0; j < 5; ++j) {
      x(i, j) = static_cast<float>(rng.Normal());
      c(i, j) = static_cast<float>(rng.Normal());
    }
  // A new expert is a zero function: the output does not change when the block grows.
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j) mixture.expert(0).up(i, j) = static_cast<float>(rng.Normal());
  mixture.expert(0).up_b.setConstant(0.3f);
  const nn::Matrix before = mixture.Forward(x, batch, tokens);
  mixture.AddExpert(rng);
  EXPECT_EQ(mixture.experts(), 2);
  const nn::Matrix& grown = mixture.Forward(x, batch, tokens);
  // Only the router's mixing changed: expert 1 outputs zero, so a = w_0 · A_0(x).
  for (int b = 0; b < batch; ++b) {
    EXPECT_NEAR(mixture.weights().row(b).sum(), 1.0f, 1e-6);
    EXPECT_TRUE(
        grown.middleRows(b * tokens, tokens)
            .isApprox(mixture.weights()(b, 0) * before.middleRows(b * tokens, tokens), 1e-5f));
  }
  // Give the new expert non-zero weights, then check every gradient.
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j) mixture.expert(1).up(i, j) = static_cast<float>(rng.Normal());
  mixture.expert(1).down_b.setConstant(0.2f);
  auto loss = [&] {
    return static_cast<double>((mixture.Forward(x, batch, tokens).array() * c.array()).sum());
  };
  loss();
  AdapterGradients g;
  nn::Matrix dx;
  mixture.Backward(c, &g, &dx);
  // Steps small enough not to cross a ReLU kink, as large as float sums allow.
  auto check = [&](float& p, float analytic, const char* what) {
    const float saved = p, h = 2e-3f;
    p = saved + h;
    const double plus = loss();
    p = saved - h;
    const double minus = loss();
    p = saved;
    const double numeric = (plus - minus) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 5e-3 + 2e-2 * std::abs(numeric)) << what;
  };
  for (int e = 0; e < 2; ++e) {
    Adapter& a = mixture.expert(e);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j) check(a.down(i, j), g.experts[e].down(i, j), "down");
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 3; ++j) check(a.up(i, j), g.experts[e].up(i, j), "up");
    for (int i = 0; i < 3; ++i) check(a.down_b[i], g.experts[e].down_b[i], "down_b");
    for (int i = 0; i < 5; ++i) check(a.up_b[i], g.experts[e].up_b[i], "up_b");
  }
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 5; ++j) check(mixture.router().weights()(i, j), g.router(i, j), "router");
    check(mixture.router().bias()[i], g.router_b[i], "router bias");
  }
  for (int i = 0; i < x.rows(); ++i)
    for (int j = 0; j < 5; ++j) check(x(i, j), dx(i, j), "x");
}

}  // namespace
}  // namespace fedcl::cl

#include "core/cl/growth_budget.h"

namespace fedcl::cl {
namespace {

TEST(GrowthBudgetTest, RefusesAtTheCapAndPastTheMemoryBudgetAndCountsIt) {
  GrowthBudget budget({.max_adapters_per_block = 2, .memory_budget_bytes = 1000});
  EXPECT_TRUE(budget.Check(3, 1, 400, 500).ok());
  absl::Status cap = budget.Check(3, 2, 100, 0);
  EXPECT_EQ(cap.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(cap.message(), ::testing::HasSubstr("cap is 2"));
  absl::Status memory = budget.Check(2, 1, 600, 500);
  EXPECT_EQ(memory.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(memory.message(), ::testing::HasSubstr("budget of 1000"));
  EXPECT_TRUE(budget.Check(2, 1, 500, 500).ok());  // exactly at the budget is allowed
  EXPECT_EQ(budget.refused_at_cap(), 1);
  EXPECT_EQ(budget.refused_for_memory(), 1);
  EXPECT_TRUE(GrowthBudget({.max_adapters_per_block = 8}).Check(0, 7, 1 << 30, 1 << 30).ok());
}

}  // namespace
}  // namespace fedcl::cl
