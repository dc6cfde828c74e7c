// The learner's OOD detector: chosen by its registered name, fed the hooks its registry entry
// names, and scoring exactly as the same detector fed those hooks by hand.
#include <cmath>

#include "absl/strings/match.h"
#include "core/base/random.h"
#include "core/cl/learner.h"
#include "core/nn/model.h"
#include "core/ood/detector_registry.h"
#include "gtest/gtest.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::cl {
namespace {

// Images of 8×8 pixels: a fixed random pattern per class (4 classes) plus noise.
struct Images {
  nn::Matrix x;
  std::vector<int32_t> y;
};
Images MakeImages(int n, uint64_t seed) {
  base::Rng patterns(1), rng(seed);
  nn::Matrix centre(4, 64);
  for (int c = 0; c < 4; ++c)
    for (int j = 0; j < 64; ++j) centre(c, j) = static_cast<float>(patterns.Uniform());
  Images out{nn::Matrix(n, 64), std::vector<int32_t>(n)};
  for (int i = 0; i < n; ++i) {
    out.y[i] = i % 4;
    for (int j = 0; j < 64; ++j)
      out.x(i, j) = centre(i % 4, j) + 0.1f * static_cast<float>(rng.Normal());
  }
  return out;
}

std::unique_ptr<Learner> MakeLearner(nn::BackboneKind backbone, const std::string& detector,
                                     const std::string& detector_options = "") {
  LearnerOptions options{.method = "linear_head"};
  options.ood_detector = detector;
  options.ood_options = detector_options;
  options.seed = 3;
  auto learner = Learner::Create(*nn::Model::Create(nn::testing::TinyConfig(backbone), 5), options);
  EXPECT_TRUE(learner.ok()) << learner.status();
  return learner.ok() ? *std::move(learner) : nullptr;
}

TEST(LearnerDetectorTest, AnUnknownDetectorOrABadOptionIsRefusedAtCreate) {
  LearnerOptions options;
  options.ood_detector = "odin";
  absl::Status s = options.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "registered: ")) << s;
  options.ood_detector = "energy";
  options.ood_options = "temperature: -1";
  s = Learner::Create(*nn::Model::Create(nn::testing::TinyConfig(nn::BackboneKind::kVit), 5),
                      options)
          .status();
  EXPECT_TRUE(absl::StrContains(s.message(), "'temperature'")) << s;
}

// For each detector kind of hook: Predict's scores and threshold are those of the registry's
// detector (same seed and options) fitted by hand on the hooks its entry names, and PredictInto
// (allocation-free for logit-only detectors) agrees with Predict.
TEST(LearnerDetectorTest, ScoresAreTheDetectorsOnTheHooksItNeeds) {
  const Images fit = MakeImages(120, 2), held = MakeImages(60, 3), probe = MakeImages(30, 4);
  for (auto [name, options] : {std::pair<const char*, const char*>{"energy", "temperature: 2"},
                               {"mahalanobis", ""},
                               {"hdc", "dimension: 300"}}) {
    SCOPED_TRACE(name);
    auto learner = MakeLearner(nn::BackboneKind::kVit, name, options);
    ASSERT_TRUE(learner->FitDetector(fit.x, fit.y, held.x).ok());
    const ood::DetectorInfo* info = *ood::FindDetector(name);
    std::unique_ptr<ood::OodDetector> reference = *info->create({.seed = 3, .options = options});
    const Inspection fit_hooks = *learner->Inspect(fit.x);
    ASSERT_TRUE(reference->Fit(fit_hooks.Batch(info->needs), fit.y).ok());
    ASSERT_TRUE(reference->Calibrate(learner->Inspect(held.x)->Batch(info->needs)).ok());
    const std::vector<float> expected =
        *reference->Score(learner->Inspect(probe.x)->Batch(info->needs));
    const std::vector<Prediction> predictions = *learner->Predict(probe.x);
    std::vector<Prediction> into(probe.x.rows());
    ASSERT_TRUE(learner->PredictInto(probe.x, absl::MakeSpan(into)).ok());
    for (int i = 0; i < probe.x.rows(); ++i) {
      EXPECT_EQ(predictions[i].ood_score, expected[i]) << i;
      EXPECT_EQ(predictions[i].ood, reference->IsOod(expected[i])) << i;
      EXPECT_EQ(into[i].ood_score, expected[i]) << i;
    }
    EXPECT_EQ(*learner->OodScores(probe.x), expected);
  }
}

// The hooks only a ViT has are refused on another backbone, before anything changes; a fit that
// fails keeps the detector the learner had.
TEST(LearnerDetectorTest, AFailedFitKeepsTheDetectorItHad) {
  const Images fit = MakeImages(120, 2), held = MakeImages(60, 3), probe = MakeImages(30, 4);
  auto mlp = MakeLearner(nn::BackboneKind::kMlp, "hdc");
  absl::Status s = mlp->FitDetector(fit.x, fit.y, held.x);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "the CLS token after each block")) << s;
  EXPECT_FALSE(mlp->OodScores(probe.x).ok());  // none fitted
  auto vit = MakeLearner(nn::BackboneKind::kVit, "mahalanobis");
  ASSERT_TRUE(vit->FitDetector(fit.x, fit.y, held.x).ok());
  const std::vector<float> before = *vit->OodScores(probe.x);
  const std::vector<int32_t> short_labels(fit.y.begin(), fit.y.begin() + 10);
  EXPECT_FALSE(vit->FitDetector(fit.x, short_labels, held.x).ok());
  absl::StatusOr<std::vector<float>> after = vit->OodScores(probe.x);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(*after, before);
}

}  // namespace
}  // namespace fedcl::cl
