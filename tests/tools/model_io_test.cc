// fedcl-import's and fedcl-export's conversion (tools/model_io/model_io.h): every backbone, with
// every value random, goes out and comes back bit for bit; a PyTorch-named file with a
// convolutional patch embedding imports through a rename map; SSF and LoRA merged on export
// compute the function of the model they were attached to; and files that do not fit the model
// are refused naming the tensors.
#include "tools/model_io/model_io.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/base/random.h"
#include "core/peft/pet_module.h"
#include "gtest/gtest.h"
#include "proto/safetensors.h"

namespace fedcl::model_io {
namespace {

// Every value of `set` random (no zero biases or unit LayerNorm weights to hide a mix-up).
void Randomize(nn::ParameterSet& set, base::Rng& rng) {
  for (int64_t i = 0; i < set.num_values(); ++i)
    set.flat_values()[i] = static_cast<float>(rng.Normal(0.0, 0.3));
}

std::unique_ptr<nn::Model> RandomModel(const nn::ModelConfig& config, uint64_t seed) {
  auto model = nn::Model::Create(config, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  base::Rng rng(seed);
  Randomize((*model)->backbone().parameters(), rng);
  Randomize((*model)->head().parameters(), rng);
  return *std::move(model);
}

nn::Matrix Images(const nn::ModelConfig& config, int n, uint64_t seed) {
  base::Rng rng(seed);
  nn::Matrix x(n, config.input_size());
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.Normal());
  return x;
}

std::vector<nn::ModelConfig> Configs() {
  nn::ModelConfig mlp;
  mlp.backbone = nn::BackboneKind::kMlp;
  mlp.mlp.hidden = {32, 16};
  mlp.image_channels = 3, mlp.image_height = 10, mlp.image_width = 12;
  mlp.num_classes = 5;
  nn::ModelConfig cnn;
  cnn.backbone = nn::BackboneKind::kCnn;
  cnn.cnn = {.conv1_channels = 4, .conv2_channels = 6, .hidden = 20};
  cnn.image_channels = 3, cnn.image_height = 16, cnn.image_width = 12;
  cnn.num_classes = 7;
  nn::ModelConfig vit;
  vit.backbone = nn::BackboneKind::kVit;
  vit.vit = {.patch = 4, .dim = 16, .depth = 2, .heads = 2, .mlp_ratio = 2};
  vit.image_channels = 3, vit.image_height = 16, vit.image_width = 8;
  vit.head = nn::HeadKind::kCosine;
  vit.num_classes = 6;
  return {mlp, cnn, vit};
}

void ExpectSameValues(const nn::ParameterSet& a, const nn::ParameterSet& b) {
  ASSERT_EQ(a.num_values(), b.num_values());
  EXPECT_EQ(std::memcmp(a.flat_values().data(), b.flat_values().data(),
                        static_cast<size_t>(a.num_values()) * sizeof(float)),
            0);
}

TEST(ModelIoTest, EveryBackboneGoesOutAndComesBackBitForBit) {
  for (const nn::ModelConfig& config : Configs()) {
    SCOPED_TRACE(nn::BackboneKindName(config.backbone));
    std::unique_ptr<nn::Model> model = RandomModel(config, 5);
    const nn::Matrix x = Images(config, 9, 6);
    const nn::Matrix logits = model->Forward(x, false);
    const nn::ParameterSet backbone = model->backbone().parameters();
    const nn::ParameterSet head = model->head().parameters();
    absl::StatusOr<std::string> file = ExportSafetensors(std::move(model), {});
    ASSERT_TRUE(file.ok()) << file.status();
    // No description: the file's metadata says what it holds.
    absl::StatusOr<std::unique_ptr<nn::Model>> back = ImportSafetensors(*file, {});
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSameValues((*back)->backbone().parameters(), backbone);
    ExpectSameValues((*back)->head().parameters(), head);
    const nn::Matrix again = (*back)->Forward(x, false);
    EXPECT_EQ(std::memcmp(again.data(), logits.data(), logits.size() * sizeof(float)), 0);
  }
}

// The file a PyTorch user has: other names (a rename map gives fedcl's), F16 weights, the
// patch embedding a convolution [dim, C, p, p].
TEST(ModelIoTest, APyTorchNamedFileImportsThroughARenameMap) {
  const nn::ModelConfig config = Configs()[2];
  std::unique_ptr<nn::Model> model = RandomModel(config, 8);
  std::vector<proto::SafetensorsOutput> tensors;
  std::string map_text = "# torch name, fedcl name\n\n";
  for (const nn::ParameterSet* set :
       {&model->backbone().parameters(), &model->head().parameters()}) {
    for (int i = 0; i < set->num_tensors(); ++i) {
      const nn::TensorInfo& info = set->tensors()[i];
      std::vector<int64_t> shape = info.shape;
      if (info.name == "patch_embed.proj.weight") {
        shape = {config.vit.dim, config.image_channels, config.vit.patch, config.vit.patch};
      }
      const std::string torch_name = "model." + info.name;
      map_text += torch_name + "  " + info.name + "\n";
      tensors.push_back({torch_name, shape, absl::MakeConstSpan(set->values(i), info.size)});
    }
  }
  const std::string file = proto::EncodeSafetensors(tensors, {});
  absl::StatusOr<std::map<std::string, std::string>> rename = ParseRenameMap(map_text);
  ASSERT_TRUE(rename.ok()) << rename.status();
  ImportOptions options{.config = config, .rename = *rename};
  absl::StatusOr<std::unique_ptr<nn::Model>> imported = ImportSafetensors(file, options);
  ASSERT_TRUE(imported.ok()) << imported.status();
  const nn::Matrix x = Images(config, 5, 9);
  const nn::Matrix expected = model->Forward(x, false);
  const nn::Matrix got = (*imported)->Forward(x, false);
  EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0);
  // Without the map every name is unknown to the model.
  absl::StatusOr<std::unique_ptr<nn::Model>> unmapped =
      ImportSafetensors(file, {.config = config, .rename = {}});
  EXPECT_TRUE(absl::StrContains(unmapped.status().message(), "lacks")) << unmapped.status();
}

TEST(ModelIoTest, SsfAndLoraMergedOnExportComputeTheAttachedModelsFunction) {
  const nn::ModelConfig config = Configs()[2];
  std::unique_ptr<nn::Model> model = RandomModel(config, 11);
  base::Rng rng(12);
  std::vector<ExportModule> modules;
  std::vector<std::unique_ptr<peft::PetModule>> attached;
  for (const auto& [name, pet] : std::vector<std::pair<std::string, peft::PetConfig>>{
           {"ssf", {.kind = peft::PetKind::kSsf}},
           {"lora", {.kind = peft::PetKind::kLora, .site_prefixes = {"blocks.1"}, .lora_rank = 2}},
           {"adapter", {.kind = peft::PetKind::kAdapter, .site_prefixes = {"blocks.0"}}}}) {
    auto module = peft::PetModule::Create(name, pet, model->backbone(), rng);
    ASSERT_TRUE(module.ok()) << module.status();
    Randomize((*module)->parameters(), rng);  // LoRA's B is zero at creation
    modules.push_back({name, pet, (*module)->parameters()});
    if (name != "adapter") {  // the expected function: SSF and LoRA on, the adapter aside
      ASSERT_TRUE((*module)->Attach(*model).ok());
      attached.push_back(*std::move(module));
    }
  }
  const nn::Matrix x = Images(config, 7, 13);
  const nn::Matrix expected = model->Forward(x, false);
  attached.clear();
  const nn::Matrix bare = model->Forward(x, false);
  ASSERT_GT((expected - bare).cwiseAbs().maxCoeff(), 1e-2f) << "the modules must matter";
  absl::StatusOr<std::string> file = ExportSafetensors(std::move(model), modules);
  ASSERT_TRUE(file.ok()) << file.status();
  // The adapter travels as its own tensors, with its configuration.
  absl::StatusOr<proto::SafetensorsFile> parsed = proto::ParseSafetensors(*file);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->metadata.contains("fedcl.module.adapter"));
  EXPECT_FALSE(parsed->metadata.contains("fedcl.module.ssf")) << "merged";
  std::vector<proto::SafetensorsOutput> model_only;
  std::vector<std::vector<float>> keep;
  keep.reserve(parsed->tensors.size());
  int adapter_tensors = 0;
  for (const proto::SafetensorsTensor& t : parsed->tensors) {
    if (absl::StartsWith(t.name, "adapter/")) {
      ++adapter_tensors;
      continue;
    }
    keep.push_back(*proto::SafetensorsFloats(t));
    model_only.push_back({t.name, t.shape, keep.back()});
  }
  EXPECT_EQ(adapter_tensors, 4) << "down and up, weight and bias, at one block";
  absl::StatusOr<std::unique_ptr<nn::Model>> merged =
      ImportSafetensors(proto::EncodeSafetensors(model_only, parsed->metadata), {});
  ASSERT_TRUE(merged.ok()) << merged.status();
  const nn::Matrix got = (*merged)->Forward(x, false);
  // A fold rounds once per weight: the logits agree to float precision.
  EXPECT_LT((got - expected).cwiseAbs().maxCoeff(),
            1e-4f * (1.0f + expected.cwiseAbs().maxCoeff()));
}

TEST(ModelIoTest, FilesThatDoNotFitTheModelAreRefusedByName) {
  const nn::ModelConfig config = Configs()[0];
  std::unique_ptr<nn::Model> model = RandomModel(config, 14);
  std::vector<proto::SafetensorsOutput> tensors;
  for (const nn::ParameterSet* set : {&model->backbone().parameters(), &model->head().parameters()})
    for (int i = 0; i < set->num_tensors(); ++i)
      tensors.push_back({set->tensors()[i].name, set->tensors()[i].shape,
                         absl::MakeConstSpan(set->values(i), set->tensors()[i].size)});
  auto refused = [&](std::vector<proto::SafetensorsOutput> file_tensors, ImportOptions options,
                     const std::string& message) {
    absl::StatusOr<std::unique_ptr<nn::Model>> imported =
        ImportSafetensors(proto::EncodeSafetensors(file_tensors, {}), options);
    EXPECT_TRUE(absl::IsInvalidArgument(imported.status())) << message << ": " << imported.status();
    EXPECT_TRUE(absl::StrContains(imported.status().message(), message)) << imported.status();
  };
  const ImportOptions plain{.config = config, .rename = {}};
  ASSERT_TRUE(ImportSafetensors(proto::EncodeSafetensors(tensors, {}), plain).ok());

  std::vector<proto::SafetensorsOutput> lacking = tensors;
  lacking.erase(lacking.begin() + 1);  // layers.0.bias
  refused(lacking, plain, "lacks 1 of the model's tensors: layers.0.bias");

  std::vector<proto::SafetensorsOutput> extra = tensors;
  const std::vector<float> three = {1, 2, 3};
  extra.push_back({"decoder.weight", {3}, three});
  refused(extra, plain, "no place for 1 of the file's tensors: decoder.weight");

  std::vector<proto::SafetensorsOutput> transposed = tensors;
  transposed[0].shape = {transposed[0].shape[1], transposed[0].shape[0]};
  refused(transposed, plain, "layers.0.weight [360, 32] (layers.0.weight is [32, 360])");

  std::vector<float> nan(tensors[1].values.begin(), tensors[1].values.end());
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<proto::SafetensorsOutput> not_finite = tensors;
  not_finite[1].values = nan;
  refused(not_finite, plain, "'layers.0.bias' has a value that is not finite");

  refused(tensors, {.config = config, .rename = {{"layers.0.bias", "layers.0.weight"}}},
          "two of the file's tensors are named 'layers.0.weight'");
  refused(tensors, {}, "does not say what model it holds");
  nn::ModelConfig bad = config;
  bad.num_classes = 0;
  EXPECT_FALSE(
      ImportSafetensors(proto::EncodeSafetensors(tensors, {}), {.config = bad, .rename = {}}).ok());
}

TEST(ModelIoTest, ADescriptionOverridesTheDefaultsAndReplacesLists) {
  absl::StatusOr<nn::ModelConfig> config = ParseModelDescription(
      R"(backbone: "mlp" mlp { hidden: [64] } image_channels: 3 image_height: 8 image_width: 8)");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backbone, nn::BackboneKind::kMlp);
  EXPECT_EQ(config->mlp.hidden, std::vector<int>{64}) << "the list replaces the default [256, 128]";
  EXPECT_EQ(config->image_channels, 3);
  EXPECT_EQ(config->num_classes, nn::ModelConfig().num_classes) << "a default kept";
  EXPECT_EQ(config->vit.dim, nn::ModelConfig().vit.dim);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseModelDescription("backbone: mlp {").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseModelDescription("num_classes: -3").status()));
  absl::StatusOr<std::map<std::string, std::string>> twice = ParseRenameMap("a b\na c\n");
  EXPECT_TRUE(absl::StrContains(twice.status().message(), "line 2: 'a' is mapped twice"))
      << twice.status();
  EXPECT_TRUE(absl::StrContains(ParseRenameMap("a b c\n").status().message(), "line 1"));
}

}  // namespace
}  // namespace fedcl::model_io
