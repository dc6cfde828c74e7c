#include "core/cl/sema.h"

#include <cmath>

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

// The pool's form of a descriptor carries it exactly: the same losses, the same z-scores.
TEST(RepresentationDescriptorTest, SharedFormRoundTripsAndBadSetsAreRefused) {
  base::Rng rng(3);
  RepresentationDescriptor rd = *RepresentationDescriptor::Create(16, 4, rng);
  LossRecords records;
  for (int step = 0; step < 30; ++step) {
    const nn::Matrix z = Subspace(32, rng, false);
    records.Add(rd.Losses(z));
    rd.TrainStep(z, 0.05f);
  }
  records.Freeze();
  const nn::ParameterSet shared = DescriptorToParameters(rd, records);
  absl::StatusOr<SharedDescriptor> back = DescriptorFromParameters(shared, 16, 4);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->records.frozen());
  EXPECT_EQ(back->records.values(), records.values());
  const nn::Matrix probe = Subspace(20, rng, true);
  const std::vector<float> a = rd.Losses(probe), b = back->rd.Losses(probe);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i], b[i]);
    EXPECT_EQ(records.ZScore(a[i]), back->records.ZScore(b[i]));
  }
  EXPECT_FALSE(DescriptorFromParameters(shared, 16, 3).ok());  // another bottleneck
  nn::ParameterSet bad = shared;
  bad.flat_values()(5) = INFINITY;
  EXPECT_THAT(DescriptorFromParameters(bad, 16, 4).status().message(),
              ::testing::HasSubstr("non-finite"));
  nn::ParameterSet short_records("descriptor");
  for (int i = 0; i < 4; ++i) short_records.Add(shared.info(i).name, shared.info(i).shape, false);
  short_records.Add("losses", {1}, false);
  EXPECT_FALSE(DescriptorFromParameters(short_records, 16, 4).ok());
}

TEST(ExpansionTest, EveryAdapterMustFindTheBatchUnusual) {
  EXPECT_TRUE(ShouldExpand({{3, 3}, {2.5, 2.6}}, 2.0));
  EXPECT_FALSE(ShouldExpand({{3, 3}, {1.5, 2.4}}, 2.0));  // adapter 1 knows it: mean 1.95
  EXPECT_FALSE(ShouldExpand({{3, 3}, {1.0, 2.0}}, 2.0));  // mean 1.5
  EXPECT_FALSE(ShouldExpand({}, 2.0));
}

}  // namespace
}  // namespace fedcl::cl

#include "absl/strings/str_cat.h"
#include "core/cl/adapter_mixture.h"
#include "core/nn/model.h"
#include "core/nn/vit_backbone.h"
#include "tests/core/nn/gradient_check.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::cl {
namespace {

// Growing starts from a zero function: the block's branch becomes w_0 · A_0(x), the old expert
// re-weighted, and the weights sum to one.
TEST(AdapterMixtureTest, ANewExpertIsAZeroFunction) {
  base::Rng rng(11);
  const int dim = 5, batch = 2, tokens = 3;
  AdapterMixture mixture(dim, 3);
  ASSERT_TRUE(mixture.AddExpert(NewExpert("e0", dim, 3, rng)).ok());
  nn::testing::Randomize(mixture.expert(0), rng);
  const nn::Matrix x = nn::testing::RandomMatrix(batch * tokens, dim, rng);
  const nn::Matrix block_input = nn::testing::RandomMatrix(batch * tokens, dim, rng);
  nn::Matrix before = nn::Matrix::Zero(batch * tokens, dim);
  mixture.ForwardAdd(x, block_input, batch, tokens, before);
  ASSERT_EQ(*mixture.AddExpert(NewExpert("e1", dim, 3, rng)), 1);
  nn::Matrix grown = nn::Matrix::Zero(batch * tokens, dim);
  mixture.ForwardAdd(x, block_input, batch, tokens, grown);
  for (int b = 0; b < batch; ++b) {
    EXPECT_NEAR(mixture.weights().row(b).sum(), 1.0f, 1e-6);
    EXPECT_GT(mixture.weights()(b, 1), 0.0f);
    EXPECT_TRUE(
        grown.middleRows(b * tokens, tokens)
            .isApprox(mixture.weights()(b, 0) * before.middleRows(b * tokens, tokens), 1e-5f));
  }
  // A wrong layout is refused and adds nothing.
  nn::ParameterSet wrong("bad");
  wrong.Add("down.weight", {2, dim}, true);
  EXPECT_FALSE(mixture.AddExpert(wrong).ok());
  EXPECT_EQ(mixture.experts(), 2);
}

// The mixture inside a tiny ViT: in the last block (which computes CLS rows only) and in a full
// block, every gradient — experts, router rows, and a LayerNorm before the mixture, reached
// through the router's token mean as well as through the experts — matches finite differences.
TEST(AdapterMixtureTest, GradientsInsideTheVitMatchFiniteDifferences) {
  nn::ModelConfig config = nn::testing::TinyConfig(nn::BackboneKind::kVit);
  auto model = *nn::Model::Create(config, 3);
  auto& vit = static_cast<nn::VitBackbone&>(model->backbone());
  base::Rng rng(12);
  const int dim = config.vit.dim;
  std::vector<std::unique_ptr<AdapterMixture>> mixtures;
  std::vector<nn::ParameterSet*> sets = {&model->backbone().parameters()};
  for (int block = 0; block < 2; ++block) {
    auto mixture = std::make_unique<AdapterMixture>(dim, 3);
    for (int e = 0; e < 3; ++e) {
      const int i = *mixture->AddExpert(NewExpert(absl::StrCat("b", block, "e", e), dim, 3, rng));
      nn::testing::Randomize(mixture->expert(i), rng);
      sets.push_back(&mixture->expert(i));
    }
    vit.block(block).adapter.SetExtension(mixture.get());
    mixtures.push_back(std::move(mixture));
  }
  mixtures[1]->expert(0).SetAllTrainable(false);  // a frozen expert gets no gradient
  model->SetBackboneTrainable(false);
  nn::ParameterSet& backbone = model->backbone().parameters();
  backbone.set_trainable(backbone.Find("blocks.0.norm1.weight"), true);
  const nn::Matrix x = nn::testing::RandomMatrix(3, 64, rng);
  const nn::Matrix r = nn::testing::RandomMatrix(3, config.num_classes, rng);
  // The experts' ReLUs need small steps; the LayerNorm's small gradient needs a larger one.
  const std::vector<nn::ParameterSet*> experts(sets.begin() + 1, sets.end());
  EXPECT_TRUE(nn::testing::CheckModelGradients(
      *model, experts, x, r, {.epsilon = 1e-3, .tolerance = 2e-2, .skip_kinks = true}));
  EXPECT_TRUE(nn::testing::CheckModelGradients(*model, {&model->backbone().parameters()}, x, r,
                                               {.skip_kinks = true}));
  model->ZeroGrads();
  model->Forward(x, true);
  model->Backward(r);
  EXPECT_EQ(mixtures[1]->expert(0).flat_grads().norm(), 0.0f);
  EXPECT_GT(mixtures[1]->expert(1).flat_grads().norm(), 0.0f);
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
