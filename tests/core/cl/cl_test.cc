#include <cmath>

#include "core/base/random.h"
#include "core/cl/accumulation.h"
#include "core/cl/cl_metrics.h"
#include "core/cl/instance_pool.h"
#include "core/cl/prototypes.h"
#include "core/cl/sample_filter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::cl {
namespace {

TEST(ContinualMetricsTest, ComputesIncrementalAccuracyForgettingAndBwt) {
  // After task 0: 0.9 on task 0. After task 1: 0.7 / 0.8. After task 2: 0.6 / 0.75 / 0.85.
  const std::vector<std::vector<double>> a = {{0.9, 0, 0}, {0.7, 0.8, 0}, {0.6, 0.75, 0.85}};
  absl::StatusOr<ContinualMetrics> m = ComputeContinualMetrics(a, {100, 100, 200});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_NEAR(m->incremental[0], 0.9, 1e-12);
  EXPECT_NEAR(m->incremental[1], 0.75, 1e-12);
  EXPECT_NEAR(m->incremental[2], (60 + 75 + 170) / 400.0, 1e-12);  // weighted by task size
  EXPECT_NEAR(m->average_incremental, (0.9 + 0.75 + 305 / 400.0) / 3, 1e-12);
  EXPECT_NEAR(m->last, 305 / 400.0, 1e-12);
  // Forgetting: task 0 best 0.9 -> 0.6, task 1 best 0.8 -> 0.75.
  EXPECT_NEAR(m->forgetting, (0.3 + 0.05) / 2, 1e-12);
  // BWT: (0.6 − 0.9 + 0.75 − 0.8) / 2.
  EXPECT_NEAR(m->backward_transfer, (-0.3 - 0.05) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(ComputeContinualMetrics({{0.5}}, {1})->forgetting, 0.0);
  EXPECT_FALSE(ComputeContinualMetrics({{0.5, 0}, {1.5, 0.2}}, {1, 1}).ok());
  EXPECT_FALSE(ComputeContinualMetrics({{0.5, 0}, {0.5}}, {1, 1}).ok());
}

TEST(AccumulationTest, EmaMovesOneMinusAlphaToTheSPerStepsTowardsAFixedTarget) {
  nn::ParameterSet online("pet");
  online.Add("w", {4}, true);
  online.flat_values().setZero();
  EmaAccumulator ema(0.9);
  EXPECT_FALSE(ema.Update(online).ok());  // not started
  ema.Start(online);
  online.flat_values().setConstant(1.0f);
  for (int s = 1; s <= 20; ++s) {
    ASSERT_TRUE(ema.Update(online).ok());
    EXPECT_NEAR(ema.offline().flat_values()[2], 1.0 - std::pow(0.9, s), 1e-5) << "step " << s;
  }
  // α for "move 10% in 1040 steps" is ViT-B's 0.9999 (to 4 significant digits).
  EXPECT_NEAR(*DecayForFraction(0.1, 1040), 0.9999, 1e-5);
  const double alpha = *DecayForFraction(0.3, 250);
  EXPECT_NEAR(1 - std::pow(alpha, 250), 0.3, 1e-12);
  EXPECT_FALSE(DecayForFraction(1.0, 10).ok());
  nn::ParameterSet other("other");
  other.Add("w", {5}, true);
  EXPECT_FALSE(ema.Update(other).ok());  // layout differs
}

TEST(AccumulationTest, EnsembleTakesTheElementwiseMaxOfTheSoftmaxes) {
  nn::Matrix on(1, 3), off(1, 3);
  on << 2.0f, 0.0f, 0.0f;   // softmax ≈ 0.787, 0.107, 0.107
  off << 0.0f, 3.0f, 0.0f;  // softmax ≈ 0.045, 0.909, 0.045
  absl::StatusOr<EnsemblePrediction> p = MaxSoftmaxEnsemble(on, off);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->label[0], 1);
  EXPECT_NEAR(p->confidence[0], std::exp(3.0f) / (std::exp(3.0f) + 2), 1e-6);
  EXPECT_FALSE(MaxSoftmaxEnsemble(on, nn::Matrix(2, 3)).ok());
}

TEST(PrototypeClassifierTest, ClassesArriveByTaskAndOldOnesNeverMove) {
  PrototypeClassifier classifier(2);
  nn::Matrix f(4, 2);
  f << 1, 0, 3, 0, 0, 1, 0, 2;
  ASSERT_TRUE(classifier.AddClasses(f, {0, 0, 1, 1}).ok());
  nn::Matrix q(2, 2);
  q << 5, 1, 1, 5;
  EXPECT_EQ(*classifier.Predict(q), (std::vector<int>{0, 1}));
  const nn::Matrix before = *classifier.Similarities(q);
  // Task 2 adds class 3 (class 2 never appears) without touching 0 and 1.
  nn::Matrix g(1, 2);
  g << -1, 0;
  ASSERT_TRUE(classifier.AddClasses(g, {3}).ok());
  const nn::Matrix after = *classifier.Similarities(q);
  EXPECT_EQ(after.leftCols(2), before);
  EXPECT_FLOAT_EQ(after(0, 2), -2.0f);  // never added
  nn::Matrix left(1, 2);
  left << -2, 0.1f;
  EXPECT_EQ((*classifier.Predict(left))[0], 3);
  EXPECT_FALSE(classifier.AddClasses(g, {0, 1}).ok());
}

TEST(SampleFilterTest, EntropyThresholdsAndRedundancy) {
  SampleFilter filter({.high_margin = 0.4, .low_margin = 0.02, .redundancy = 0.05});
  // C = 10: E_max = 0.4 ln 10 = 0.921, E_min = 0.046.
  nn::Matrix logits = nn::Matrix::Zero(4, 10);
  logits(0, 0) = 4.0f;   // confident: entropy ≈ 0.55 -> kept
  logits(1, 0) = 20.0f;  // nearly one-hot: entropy ≈ 0 -> below E_min, dropped
  logits(2, 0) = 0.5f;   // near-uniform: entropy ≈ 2.2 -> unreliable, dropped
  logits(3, 3) = 4.0f;   // confident on another class -> kept
  const std::vector<float> entropy = SampleFilter::Entropies([&] {
    nn::Matrix p = logits;
    for (int i = 0; i < 4; ++i) {
      p.row(i) = p.row(i).array().exp();
      p.row(i) /= p.row(i).sum();
    }
    return p;
  }());
  EXPECT_LT(entropy[0], 0.4 * std::log(10.0));
  EXPECT_LT(entropy[1], 0.02 * std::log(10.0));
  EXPECT_GT(entropy[2], 0.4 * std::log(10.0));
  EXPECT_EQ(*filter.Select(logits), (std::vector<bool>{true, false, false, true}));
  // p̄ now mixes classes 0 and 3; a confident class-0 sample is too similar to it (|cos| >= d),
  // one confident on class 7 is not.
  nn::Matrix next = nn::Matrix::Zero(2, 10);
  next(0, 0) = 4.0f;
  next(1, 7) = 6.0f;
  EXPECT_EQ(*filter.Select(next), (std::vector<bool>{false, true}));
  EXPECT_EQ(filter.seen(), 6);
  EXPECT_EQ(filter.kept(), 3);
}

TEST(InstancePoolTest, EachInstancePicksItsOwnTopK) {
  nn::Matrix keys(4, 2);
  keys << 1, 0, 0, 1, -1, 0, 0.7f, 0.7f;
  nn::Matrix queries(3, 2);
  queries << 1, 0.1f, 0.1f, 1, 1, 0.1f;
  absl::StatusOr<InstanceSelection> s = SelectTopK(queries, keys, 2);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->indices[0], (std::vector<int>{0, 3}));
  EXPECT_EQ(s->indices[1], (std::vector<int>{1, 3}));
  EXPECT_EQ(s->indices[2], (std::vector<int>{0, 3}));
  const float c0 = 1 / std::sqrt(1.01f),
              c3 = (0.7f + 0.07f) / (std::sqrt(0.98f) * std::sqrt(1.01f));
  EXPECT_NEAR(s->reduced_similarity[0], c0 + c3, 1e-5);
  // Uniform mean of the selected rows, per instance.
  nn::Matrix pool(4, 1);
  pool << 10, 20, 30, 40;
  const nn::Matrix mean = MeanOfSelected(pool, *s);
  EXPECT_FLOAT_EQ(mean(0, 0), 25);
  EXPECT_FLOAT_EQ(mean(1, 0), 30);
  EXPECT_EQ(GroupBySelection(*s), (std::vector<std::vector<int>>{{0, 2}, {1}}));
  EXPECT_FALSE(SelectTopK(queries, keys, 5).ok());
}

TEST(InstancePoolTest, MatchingLossGradientMatchesFiniteDifferences) {
  base::Rng rng(5);
  nn::Matrix keys(5, 4), queries(3, 4);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) keys(i, j) = static_cast<float>(rng.Normal());
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) queries(i, j) = static_cast<float>(rng.Normal());
  const InstanceSelection s = *SelectTopK(queries, keys, 2);
  nn::Matrix gradient = nn::Matrix::Zero(5, 4);
  MatchingLoss(queries, keys, s, 0.1, &gradient);
  // The selection stays fixed (it is not differentiable); perturb each key entry.
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 4; ++j) {
      const double h = 1e-3;
      auto loss_at = [&](double delta) {
        nn::Matrix k = keys;
        k(i, j) += static_cast<float>(delta);
        InstanceSelection same = s;
        for (size_t x = 0; x < same.indices.size(); ++x) {
          float sum = 0;
          for (int r : same.indices[x])
            sum += queries.row(x).dot(k.row(r)) / (queries.row(x).norm() * k.row(r).norm());
          same.reduced_similarity[x] = sum;
        }
        return MatchingLoss(queries, k, same, 0.1, nullptr);
      };
      const double numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
      EXPECT_NEAR(gradient(i, j), numeric, 2e-4) << "key " << i << " dim " << j;
    }
  }
}

}  // namespace
}  // namespace fedcl::cl

#include "core/cl/label_free.h"
#include "core/nn/model.h"

namespace fedcl::cl {
namespace {

TEST(LabelFreeAdapterTest, LowersEntropyTouchingOnlyNormsAndSsf) {
  nn::ModelConfig config;
  config.backbone = nn::BackboneKind::kVit;
  auto model = *nn::Model::Create(config, 5);
  base::Rng rng(6);
  nn::Matrix images(64, 784);
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 784; ++j) images(i, j) = static_cast<float>(rng.Normal());
  // Make the head confident enough that some samples pass E_max = 0.4 ln 10.
  model->head().parameters().flat_values() *= 30.0f;
  const nn::ParameterSet before = model->backbone().parameters();
  LabelFreeAdapter adapter(*model, {.learning_rate = 0.05f, .filter = {.redundancy = 0}});
  EXPECT_GT(adapter.trainable_values(), 0);
  double first = -1, last = -1;
  int64_t used = 0;
  for (int step = 0; step < 10; ++step) {
    absl::StatusOr<AdaptStep> s = adapter.Adapt(images);
    ASSERT_TRUE(s.ok()) << s.status();
    used += s->used;
    if (s->used == 0) continue;
    if (first < 0) first = s->entropy;
    last = s->entropy;
  }
  ASSERT_GT(used, 0);
  EXPECT_LT(last, first);
  const nn::ParameterSet& after = model->backbone().parameters();
  bool norm_changed = false;
  for (int i = 0; i < after.num_tensors(); ++i) {
    const bool same = after.vector(i) == before.vector(i);
    const std::string& name = after.info(i).name;
    if (name.find("norm") != std::string::npos) {
      norm_changed = norm_changed || !same;
    } else {
      EXPECT_TRUE(same) << name << " changed";
    }
  }
  EXPECT_TRUE(norm_changed);
}

}  // namespace
}  // namespace fedcl::cl
