#include "core/peft/pet_module.h"

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "core/nn/training.h"
#include "gtest/gtest.h"
#include "tests/core/nn/gradient_check.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::peft {
namespace {

using nn::BackboneKind;
using nn::Matrix;
using nn::testing::AllBackbones;
using nn::testing::KindName;
using nn::testing::RandomMatrix;
using nn::testing::TinyConfig;

std::unique_ptr<nn::Model> MakeModel(BackboneKind kind, uint64_t seed = 1) {
  auto model = nn::Model::Create(TinyConfig(kind), seed);
  EXPECT_TRUE(model.ok()) << model.status();
  return *std::move(model);
}

std::unique_ptr<PetModule> MakeModule(PetKind kind, const nn::Model& model, uint64_t seed = 5,
                                      std::vector<std::string> prefixes = {}) {
  PetConfig config;
  config.kind = kind;
  config.site_prefixes = std::move(prefixes);
  config.adapter_bottleneck = 3;
  config.lora_rank = 2;
  config.lora_alpha = 3.0f;
  base::Rng rng(seed);
  auto module = PetModule::Create(std::string(PetKindName(kind)), config, model.backbone(), rng);
  EXPECT_TRUE(module.ok()) << module.status();
  return *std::move(module);
}

// Which PET kinds each backbone offers sites for.
std::vector<PetKind> KindsFor(BackboneKind backbone) {
  if (backbone == BackboneKind::kVit) return {PetKind::kSsf, PetKind::kAdapter, PetKind::kLora};
  return {PetKind::kSsf, PetKind::kLora};
}

// The model's output on fixed inputs.
Matrix Outputs(nn::Model& model, uint64_t seed = 9) {
  base::Rng rng(seed);
  Matrix x = RandomMatrix(5, model.config().input_size(), rng);
  return model.Forward(x, false);
}

TEST(PetModuleGradientTest, EveryModuleKindMatchesFiniteDifferencesOnAFrozenBackbone) {
  for (BackboneKind backbone : AllBackbones()) {
    for (PetKind kind : KindsFor(backbone)) {
      SCOPED_TRACE(KindName(backbone) + " + " + std::string(PetKindName(kind)));
      auto model = MakeModel(backbone);
      model->SetBackboneTrainable(false);
      auto module = MakeModule(kind, *model);
      // Non-degenerate values: a zero LoRA B or adapter up-projection would hide half the terms,
      // and the ViT's init (weights ~0.02, CLS ~1e-6) leaves early sites with ~1e-5 gradients,
      // below float finite-difference resolution.
      base::Rng rng(17);
      // SSF scales stay near 1: fourteen sites scaling by ~0.25 each would silence the input.
      if (kind == PetKind::kSsf) {
        nn::testing::Randomize(module->parameters(), rng, 0.5f, 1.5f);
      } else {
        nn::testing::Randomize(module->parameters(), rng, -0.5f, 0.5f);
      }
      nn::testing::Randomize(model->backbone().parameters(), rng, -0.5f, 0.5f);
      ASSERT_TRUE(module->Attach(*model).ok());
      Matrix x = RandomMatrix(3, model->config().input_size(), rng);
      Matrix r = RandomMatrix(3, 4, rng);
      nn::testing::GradCheckOptions options;
      options.epsilon = 2e-3;
      options.skip_kinks = backbone != BackboneKind::kVit || kind == PetKind::kAdapter;
      EXPECT_TRUE(nn::testing::CheckModelGradients(
          *model, {&module->parameters(), &model->head().parameters()}, x, r, options));
      EXPECT_EQ(model->backbone().parameters().flat_grads().squaredNorm(), 0.0f);
    }
  }
}

TEST(PetModuleTest, FreshModulesStartAsTheirReferenceInitialisation) {
  auto model = MakeModel(BackboneKind::kVit);
  Matrix plain = Outputs(*model);
  // Adapter (zero up-projection) and LoRA (zero B) start as exact no-ops.
  for (PetKind kind : {PetKind::kAdapter, PetKind::kLora}) {
    auto module = MakeModule(kind, *model);
    ASSERT_TRUE(module->Attach(*model).ok());
    EXPECT_EQ(Outputs(*model), plain) << PetKindName(kind);
  }
  // SSF starts near identity: γ ~ N(1, 0.02²), β ~ N(0, 0.02²).
  auto ssf = MakeModule(PetKind::kSsf, *model);
  std::vector<float> scales, shifts;
  for (int t = 0; t < ssf->parameters().num_tensors(); ++t) {
    auto v = ssf->parameters().vector(t);
    bool is_scale = ssf->parameters().info(t).name.find("ssf_scale") != std::string::npos;
    (is_scale ? scales : shifts)
        .insert((is_scale ? scales : shifts).end(), v.data(), v.data() + v.size());
  }
  for (auto [values, mean] : {std::pair{&scales, 1.0}, std::pair{&shifts, 0.0}}) {
    Eigen::Map<Eigen::VectorXf> v(values->data(), values->size());
    double n = static_cast<double>(v.size());
    double sample_mean = v.mean();
    double sample_sd = std::sqrt((v.array() - sample_mean).square().sum() / (n - 1));
    EXPECT_NEAR(sample_mean, mean, 4 * 0.02 / std::sqrt(n));  // 4 standard errors
    EXPECT_NEAR(sample_sd, 0.02, 0.005);
  }
}

TEST(PetModuleTest, SsfCoversEverySiteOfTheDesign) {
  auto vit = MakeModel(BackboneKind::kVit);
  auto ssf = MakeModule(PetKind::kSsf, *vit);
  // patch embedding + 6 per block × 2 blocks + final norm, two tensors each.
  EXPECT_EQ(ssf->parameters().num_tensors(), 2 * (1 + 6 * 2 + 1));
  EXPECT_GE(ssf->parameters().Find("blocks.1.norm1.ssf_scale"), 0);
  EXPECT_GE(ssf->parameters().Find("blocks.0.attn.qkv.ssf_shift"), 0);
  EXPECT_GE(ssf->parameters().Find("norm.ssf_scale"), 0);
  auto cnn = MakeModel(BackboneKind::kCnn);
  auto cnn_ssf = MakeModule(PetKind::kSsf, *cnn);
  EXPECT_EQ(cnn_ssf->parameters().info(cnn_ssf->parameters().Find("conv1.ssf_scale")).shape,
            nn::Shape{3});  // one per channel
  auto mlp = MakeModel(BackboneKind::kMlp);
  EXPECT_EQ(MakeModule(PetKind::kSsf, *mlp)->parameters().num_tensors(), 4);
}

TEST(PetModuleTest, SitePrefixesSelectBlocks) {
  auto model = MakeModel(BackboneKind::kVit);
  auto adapter = MakeModule(PetKind::kAdapter, *model, 5, {"blocks.1"});
  EXPECT_EQ(adapter->parameters().num_tensors(), 4);
  EXPECT_GE(adapter->parameters().Find("blocks.1.adapter.up.weight"), 0);
  PetConfig config{.kind = PetKind::kLora, .site_prefixes = {"blocks.9"}};
  base::Rng rng(1);
  auto none = PetModule::Create("none", config, model->backbone(), rng);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
}

// Gives every tensor of `set` whose name ends in `suffix` (and contains `infix`) values drawn
// uniformly from [lo, hi]; returns how many tensors it changed.
int RandomizeTensors(nn::ParameterSet& set, absl::string_view infix, absl::string_view suffix,
                     base::Rng& rng, float lo, float hi) {
  int changed = 0;
  for (int t = 0; t < set.num_tensors(); ++t) {
    const std::string& name = set.info(t).name;
    if (!absl::EndsWith(name, suffix) || !absl::StrContains(name, infix)) continue;
    auto v = set.vector(t);
    for (Eigen::Index i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rng.Uniform(lo, hi));
    ++changed;
  }
  return changed;
}

// A fresh backbone has zero biases and unit LayerNorm weights, under which a fold that forgets to
// scale the old bias (b ← b + β instead of b ← γ·b + β) or the old weight computes the same
// function. Every bias, every LayerNorm weight and the SSF shifts are therefore random here, and
// the scales are far from 1.
TEST(PetModuleMergeTest, MergedSsfComputesTheSameFunction) {
  for (BackboneKind backbone : AllBackbones()) {
    SCOPED_TRACE(KindName(backbone));
    auto model = MakeModel(backbone);
    auto ssf = MakeModule(PetKind::kSsf, *model);
    base::Rng rng(3);
    nn::ParameterSet& weights = model->backbone().parameters();
    ASSERT_GT(RandomizeTensors(weights, "", ".bias", rng, -0.5f, 0.5f), 0);
    const int norms = RandomizeTensors(weights, "norm", ".weight", rng, 0.5f, 1.5f);
    if (backbone == BackboneKind::kVit) ASSERT_EQ(norms, 2 * 2 + 1);  // norm1, norm2 ×2, norm
    ASSERT_GT(RandomizeTensors(ssf->parameters(), "", "ssf_scale", rng, 0.5f, 1.5f), 0);
    ASSERT_GT(RandomizeTensors(ssf->parameters(), "", "ssf_shift", rng, -0.5f, 0.5f), 0);
    ASSERT_TRUE(ssf->Attach(*model).ok());
    Matrix before = Outputs(*model);
    ASSERT_TRUE(ssf->MergeInto(*model).ok());
    EXPECT_FALSE(ssf->attached());
    Matrix after = Outputs(*model);
    EXPECT_TRUE(after.isApprox(before, 1e-5f))
        << "max diff " << (after - before).cwiseAbs().maxCoeff();
    // The merged model has no SSF left: every site is free again.
    for (const nn::SsfSite* site : model->backbone().ssf_sites()) EXPECT_FALSE(site->active());
  }
}

TEST(PetModuleMergeTest, MergedLoraComputesTheSameFunction) {
  for (BackboneKind backbone : AllBackbones()) {
    SCOPED_TRACE(KindName(backbone));
    auto model = MakeModel(backbone);
    auto lora = MakeModule(PetKind::kLora, *model);
    base::Rng rng(4);
    nn::testing::Randomize(lora->parameters(), rng);
    ASSERT_TRUE(lora->Attach(*model).ok());
    Matrix before = Outputs(*model);
    ASSERT_TRUE(lora->MergeInto(*model).ok());
    Matrix after = Outputs(*model);
    EXPECT_TRUE(after.isApprox(before, 1e-5f))
        << "max diff " << (after - before).cwiseAbs().maxCoeff();
  }
}

TEST(PetModuleMergeTest, SsfAndLoraTogetherMergeLoraFirst) {
  auto model = MakeModel(BackboneKind::kVit);
  auto ssf = MakeModule(PetKind::kSsf, *model);
  auto lora = MakeModule(PetKind::kLora, *model);
  base::Rng rng(5);
  nn::testing::Randomize(lora->parameters(), rng);
  ASSERT_TRUE(ssf->Attach(*model).ok());
  ASSERT_TRUE(lora->Attach(*model).ok());
  Matrix before = Outputs(*model);
  nn::ParameterSet backbone_before = model->backbone().parameters();
  absl::Status refused = ssf->MergeInto(*model);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(model->backbone().parameters().flat_values(), backbone_before.flat_values())
      << "a refused merge changes nothing";
  EXPECT_TRUE(ssf->attached());
  ASSERT_TRUE(lora->MergeInto(*model).ok());
  ASSERT_TRUE(ssf->MergeInto(*model).ok());
  EXPECT_TRUE(Outputs(*model).isApprox(before, 1e-5f));
}

TEST(PetModuleMergeTest, AdapterCannotBeMerged) {
  auto model = MakeModel(BackboneKind::kVit);
  auto adapter = MakeModule(PetKind::kAdapter, *model);
  ASSERT_TRUE(adapter->Attach(*model).ok());
  EXPECT_EQ(adapter->MergeInto(*model).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(adapter->attached());
}

TEST(PetModuleShippingTest, ExtractedModuleReattachesToAnotherReplica) {
  for (BackboneKind backbone : AllBackbones()) {
    for (PetKind kind : KindsFor(backbone)) {
      SCOPED_TRACE(KindName(backbone) + " + " + std::string(PetKindName(kind)));
      auto device = MakeModel(backbone, 1);
      auto server_copy = MakeModel(backbone, 1);
      auto module = MakeModule(kind, *device);
      base::Rng rng(6);
      nn::testing::Randomize(module->parameters(), rng);
      ASSERT_TRUE(module->Attach(*device).ok());
      nn::ParameterSet shipped = module->parameters();  // the extracted, standalone copy
      auto rebuilt = PetModule::FromParameters("received", module->config(), shipped);
      ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
      ASSERT_TRUE((*rebuilt)->Attach(*server_copy).ok());
      EXPECT_EQ(Outputs(*server_copy), Outputs(*device));
    }
  }
}

TEST(PetModuleShippingTest, MalformedShippedModulesAreRejected) {
  PetConfig lora{.kind = PetKind::kLora, .lora_rank = 2};
  nn::ParameterSet missing("m");
  missing.Add("blocks.0.attn.qkv.lora_a", {2, 8}, true);
  EXPECT_EQ(PetModule::FromParameters("m", lora, missing).status().code(),
            absl::StatusCode::kInvalidArgument);
  nn::ParameterSet wrong_rank("m");
  wrong_rank.Add("blocks.0.attn.qkv.lora_a", {3, 8}, true);
  wrong_rank.Add("blocks.0.attn.qkv.lora_b", {24, 3}, true);
  EXPECT_FALSE(PetModule::FromParameters("m", lora, wrong_rank).ok());
  nn::ParameterSet foreign("m");
  foreign.Add("blocks.0.attn.qkv.weight", {24, 8}, true);
  auto status = PetModule::FromParameters("m", lora, foreign).status();
  EXPECT_NE(status.message().find("blocks.0.attn.qkv.weight"), std::string::npos);
}

TEST(PetModuleAttachTest, ModuleForAnotherBackboneIsRefusedAndNothingIsBound) {
  auto vit = MakeModel(BackboneKind::kVit);
  auto mlp = MakeModel(BackboneKind::kMlp);
  auto ssf = MakeModule(PetKind::kSsf, *vit);
  absl::Status status = ssf->Attach(*mlp);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ssf->attached());
  for (const nn::SsfSite* site : mlp->backbone().ssf_sites()) EXPECT_FALSE(site->active());
  EXPECT_EQ(mlp->parameter_sets().size(), 2u);
}

TEST(PetModuleAttachTest, ASiteTakesOneModuleAtATime) {
  auto model = MakeModel(BackboneKind::kVit);
  auto first = MakeModule(PetKind::kSsf, *model, 1);
  auto second = MakeModule(PetKind::kSsf, *model, 2);
  ASSERT_TRUE(first->Attach(*model).ok());
  EXPECT_EQ(second->Attach(*model).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(first->Attach(*model).code(), absl::StatusCode::kFailedPrecondition);
  first->Detach();
  EXPECT_TRUE(second->Attach(*model).ok());
}

TEST(PetModuleAttachTest, DestroyingAnAttachedModuleDetachesIt) {
  auto model = MakeModel(BackboneKind::kVit);
  Matrix plain = Outputs(*model);
  {
    auto ssf = MakeModule(PetKind::kSsf, *model);
    ASSERT_TRUE(ssf->Attach(*model).ok());
    EXPECT_EQ(model->parameter_sets().size(), 3u);
  }
  EXPECT_EQ(model->parameter_sets().size(), 2u);
  EXPECT_EQ(Outputs(*model), plain);
}

TEST(PetModuleTrainingTest, TrainingSsfLeavesTheFrozenBackboneUntouched) {
  auto model = MakeModel(BackboneKind::kVit);
  model->SetBackboneTrainable(false);
  auto ssf = MakeModule(PetKind::kSsf, *model);
  ASSERT_TRUE(ssf->Attach(*model).ok());
  nn::ParameterSet backbone_before = model->backbone().parameters();
  nn::ParameterSet ssf_before = ssf->parameters();
  base::Rng rng(8);
  Matrix x = RandomMatrix(8, model->config().input_size(), rng);
  std::vector<int32_t> labels = {0, 1, 2, 3, 0, 1, 2, 3};
  nn::Sgd sgd({.learning_rate = 0.1f, .momentum = 0.9f});
  for (int i = 0; i < 5; ++i) nn::TrainStep(*model, sgd, x, labels);
  EXPECT_EQ(model->backbone().parameters().flat_values(), backbone_before.flat_values());
  EXPECT_NE(ssf->parameters().flat_values(), ssf_before.flat_values());
}

}  // namespace
}  // namespace fedcl::peft
