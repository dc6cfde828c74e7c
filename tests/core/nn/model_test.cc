// Backbones, heads and the model as a whole: gradients, determinism and learning.
#include "core/nn/model.h"

#include <cmath>

#include "core/nn/loss.h"
#include "core/nn/optimizer.h"
#include "core/nn/training.h"
#include "gtest/gtest.h"
#include "tests/core/nn/gradient_check.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::nn {
namespace {

using testing::AllBackbones;
using testing::KindName;
using testing::RandomMatrix;
using testing::TinyConfig;

std::unique_ptr<Model> MakeModel(const ModelConfig& config, uint64_t seed = 1) {
  auto model = Model::Create(config, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

// Gradient checks want well-conditioned weights: the ViT's initial CLS token is ~1e-6, and a
// finite-difference step next to a LayerNorm of near-zero values measures curvature, not slope.
std::unique_ptr<Model> MakeRandomizedModel(const ModelConfig& config, uint64_t seed = 1) {
  auto model = MakeModel(config, seed);
  base::Rng rng(seed + 100);
  for (ParameterSet* set : model->parameter_sets()) testing::Randomize(*set, rng, -0.5f, 0.5f);
  return model;
}

testing::GradCheckOptions FineSteps(BackboneKind kind) {
  testing::GradCheckOptions options;
  options.epsilon = 2e-3;  // ReLU nets: a smaller step crosses fewer kinks
  options.skip_kinks = kind != BackboneKind::kVit;
  return options;
}

// Full training: every backbone and head tensor is checked against finite differences.
TEST(ModelGradientTest, EveryBackboneMatchesFiniteDifferencesWhenFullyTrained) {
  for (BackboneKind kind : AllBackbones()) {
    for (int channels : {1, 2}) {
      SCOPED_TRACE(KindName(kind) + " channels " + std::to_string(channels));
      auto model = MakeRandomizedModel(TinyConfig(kind, channels));
      base::Rng rng(3);
      Matrix x = RandomMatrix(3, model->config().input_size(), rng);
      Matrix r = RandomMatrix(3, 4, rng);
      EXPECT_TRUE(
          testing::CheckModelGradients(*model, model->parameter_sets(), x, r, FineSteps(kind)));
    }
  }
}

TEST(ModelGradientTest, CosineHeadMatchesFiniteDifferences) {
  for (BackboneKind kind : AllBackbones()) {
    SCOPED_TRACE(KindName(kind));
    auto model = MakeRandomizedModel(TinyConfig(kind, 1, HeadKind::kCosine));
    base::Rng rng(4);
    Matrix x = RandomMatrix(3, model->config().input_size(), rng);
    Matrix r = RandomMatrix(3, 4, rng);
    EXPECT_TRUE(
        testing::CheckModelGradients(*model, model->parameter_sets(), x, r, FineSteps(kind)));
  }
}

TEST(ModelTest, FrozenBackboneGetsNoGradientAndSkipsNothingTheHeadNeeds) {
  for (BackboneKind kind : AllBackbones()) {
    SCOPED_TRACE(KindName(kind));
    auto model = MakeModel(TinyConfig(kind));
    model->SetBackboneTrainable(false);
    base::Rng rng(5);
    Matrix x = RandomMatrix(3, model->config().input_size(), rng);
    Matrix r = RandomMatrix(3, 4, rng);
    EXPECT_TRUE(testing::CheckModelGradients(*model, model->parameter_sets(), x, r));
    EXPECT_EQ(model->backbone().parameters().flat_grads().squaredNorm(), 0.0f);
  }
}

TEST(ModelTest, SameSeedGivesIdenticalWeightsAndOutputs) {
  for (BackboneKind kind : AllBackbones()) {
    auto a = MakeModel(TinyConfig(kind), 11);
    auto b = MakeModel(TinyConfig(kind), 11);
    auto c = MakeModel(TinyConfig(kind), 12);
    EXPECT_EQ(a->backbone().parameters().flat_values(), b->backbone().parameters().flat_values());
    EXPECT_NE(a->backbone().parameters().flat_values(), c->backbone().parameters().flat_values());
    base::Rng rng(1);
    Matrix x = RandomMatrix(5, a->config().input_size(), rng);
    EXPECT_EQ(Matrix(a->Forward(x, false)), Matrix(b->Forward(x, false)));
  }
}

TEST(ModelTest, InferenceOutputDoesNotDependOnBatchComposition) {
  for (BackboneKind kind : AllBackbones()) {
    SCOPED_TRACE(KindName(kind));
    auto model = MakeModel(TinyConfig(kind));
    base::Rng rng(2);
    Matrix x = RandomMatrix(6, model->config().input_size(), rng);
    Matrix all = model->Forward(x, false);
    for (int i = 0; i < 6; ++i) {
      Matrix one = model->Forward(x.middleRows(i, 1), false);
      EXPECT_TRUE(one.isApprox(all.row(i), 1e-5f)) << "row " << i;
    }
  }
}

TEST(ModelTest, InvalidConfigIsRejectedNamingTheField) {
  ModelConfig config = TinyConfig(BackboneKind::kVit);
  config.vit.heads = 3;  // 8 is not divisible by 3
  auto model = Model::Create(config, 1);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("heads"), std::string::npos);
  config = TinyConfig(BackboneKind::kCnn);
  config.image_height = 10;
  EXPECT_FALSE(Model::Create(config, 1).ok());
}

// A seed must reproduce a run bit for bit wherever the allocator happens to place buffers (the
// simulator's determinism rests on it): train twice with differently fragmented heaps.
TEST(ModelTrainingTest, TrainingIsBitReproducibleWhateverTheHeapLayout) {
  for (BackboneKind kind : AllBackbones()) {
    SCOPED_TRACE(KindName(kind));
    std::vector<Eigen::VectorXf> final_weights;
    for (int run = 0; run < 2; ++run) {
      // Shift every later allocation by a different odd number of floats.
      std::vector<std::unique_ptr<float[]>> junk;
      for (int i = 0; i < 7; ++i) junk.emplace_back(new float[3 + 5 * run + i]);
      auto model = MakeModel(TinyConfig(kind), 21);
      base::Rng rng(4);
      Matrix x = RandomMatrix(16, model->config().input_size(), rng);
      std::vector<int32_t> labels(16);
      for (int i = 0; i < 16; ++i) labels[i] = i % 4;
      AdamW adamw({});
      for (int step = 0; step < 5; ++step) TrainStep(*model, adamw, x, labels);
      Eigen::VectorXf all(model->backbone().parameters().num_values() +
                          model->head().parameters().num_values());
      all << model->backbone().parameters().flat_values(), model->head().parameters().flat_values();
      final_weights.push_back(all);
    }
    EXPECT_EQ(final_weights[0], final_weights[1]);
  }
}

// A generated problem: each class is a distinct random template; samples are the template plus
// noise. Every backbone must learn it.
TEST(ModelTrainingTest, LossFallsAndAccuracyRisesOnGeneratedData) {
  for (BackboneKind kind : AllBackbones()) {
    SCOPED_TRACE(KindName(kind));
    ModelConfig config = TinyConfig(kind);
    auto model = MakeModel(config, 3);
    base::Rng rng(9);
    Matrix templates = RandomMatrix(4, config.input_size(), rng);
    const int n = 256;
    Matrix x(n, config.input_size());
    std::vector<int32_t> labels(n);
    for (int i = 0; i < n; ++i) {
      labels[i] = i % 4;
      x.row(i) = templates.row(labels[i]) + 0.5f * RandomMatrix(1, config.input_size(), rng);
    }
    AdamW adamw({.learning_rate = 3e-3f, .weight_decay = 0.0f});
    EvalResult before = Evaluate(*model, x, labels);
    for (int step = 0; step < 150; ++step) {
      int first = (step * 32) % n;
      TrainStep(*model, adamw, x.middleRows(first, 32),
                absl::MakeConstSpan(labels).subspan(first, 32));
    }
    EvalResult after = Evaluate(*model, x, labels);
    EXPECT_LT(after.loss, 0.3 * before.loss);
    EXPECT_GT(after.accuracy, 0.95);
  }
}

}  // namespace
}  // namespace fedcl::nn
