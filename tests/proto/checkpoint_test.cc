#include "proto/checkpoint.h"

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/envelope.h"
#include "proto/tensor_convert.h"
#include "tests/core/nn/gradient_check.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::proto {
namespace {

using nn::BackboneKind;
using nn::Matrix;
using nn::testing::AllBackbones;
using nn::testing::KindName;
using nn::testing::TinyConfig;
using ::testing::HasSubstr;

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();
constexpr char kPath[] = "/state/model.ckpt";

// A tiny model with non-trivial weights (the default init leaves e.g. biases at zero).
std::unique_ptr<nn::Model> MakeModel(const nn::ModelConfig& config, uint64_t seed = 1) {
  auto model = nn::Model::Create(config, seed);
  EXPECT_TRUE(model.ok()) << model.status();
  base::Rng rng(seed + 100);
  nn::testing::Randomize((*model)->backbone().parameters(), rng);
  nn::testing::Randomize((*model)->head().parameters(), rng);
  return *std::move(model);
}

std::unique_ptr<peft::PetModule> MakeModule(peft::PetKind kind, const std::string& name,
                                            const nn::Model& model,
                                            std::vector<std::string> prefixes = {}) {
  peft::PetConfig config;
  config.kind = kind;
  config.site_prefixes = std::move(prefixes);
  config.adapter_bottleneck = 3;
  config.lora_rank = 2;
  config.lora_alpha = 3.0f;
  base::Rng rng(5);
  auto module = peft::PetModule::Create(name, config, model.backbone(), rng);
  EXPECT_TRUE(module.ok()) << module.status();
  // Nonzero everywhere, so a module that failed to attach would change the outputs.
  nn::testing::Randomize((*module)->parameters(), rng, -0.3f, 0.3f);
  return *std::move(module);
}

// The model's outputs on fixed inputs.
Matrix Outputs(nn::Model& model) {
  base::Rng rng(9);
  Matrix x = nn::testing::RandomMatrix(6, model.config().input_size(), rng);
  return model.Forward(x, /*training=*/false);
}

::testing::AssertionResult BitIdentical(const Matrix& a, const Matrix& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) {
    return ::testing::AssertionFailure() << "shapes differ";
  }
  if (std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) != 0) {
    return ::testing::AssertionFailure() << "values differ:\n" << a << "\nvs\n" << b;
  }
  return ::testing::AssertionSuccess();
}

CheckpointMetadata SomeMetadata() {
  CheckpointMetadata metadata;
  metadata.classes = {3, 1, 4, 7};
  metadata.epochs = 5;
  metadata.test_accuracy = 0.8125;
  metadata.created_by = "checkpoint_test";
  metadata.extra = {{"seed", "1"}, {"note", "tiny"}};
  return metadata;
}

// Reads the stored message, lets `edit` change it, and writes it back with valid checksums.
template <typename Edit>
void EditStoredMessage(base::MemoryFileSystem& fs, Edit edit) {
  v1::ModelCheckpoint message;
  ASSERT_TRUE(ReadEnvelope(fs, kPath, PayloadKind::kModelCheckpoint, &message, kNoLimit).ok());
  edit(message);
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kModelCheckpoint, message).ok());
}

// A saved tiny ViT, the starting point of the refusal tests.
class StoredCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = MakeModel(TinyConfig(BackboneKind::kVit));
    ssf_ = MakeModule(peft::PetKind::kSsf, "ssf", *model_);
    ASSERT_TRUE(ssf_->Attach(*model_).ok());
    ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *model_, {ssf_.get()}, SomeMetadata()).ok());
  }

  // Loading fails with `code` and a message naming the path and containing `part`.
  void ExpectLoadFails(absl::StatusCode code, const std::string& part) {
    absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs_, kPath, kNoLimit);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), code) << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(kPath));
    EXPECT_THAT(loaded.status().message(), HasSubstr(part));
  }

  base::MemoryFileSystem fs_;
  std::unique_ptr<nn::Model> model_;
  std::unique_ptr<peft::PetModule> ssf_;
};

TEST(CheckpointConfigTest, ModelConfigRoundTripsForEveryBackboneAndHead) {
  for (BackboneKind kind : AllBackbones()) {
    for (nn::HeadKind head : {nn::HeadKind::kLinear, nn::HeadKind::kCosine}) {
      SCOPED_TRACE(KindName(kind));
      nn::ModelConfig config = TinyConfig(kind, /*channels=*/2, head);
      v1::ModelConfig message;
      ToProto(config, &message);
      absl::StatusOr<nn::ModelConfig> back = FromProto(message);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(back->backbone, config.backbone);
      EXPECT_EQ(back->head, config.head);
      EXPECT_EQ(back->mlp.hidden, config.mlp.hidden);
      EXPECT_EQ(back->cnn.conv1_channels, config.cnn.conv1_channels);
      EXPECT_EQ(back->cnn.conv2_channels, config.cnn.conv2_channels);
      EXPECT_EQ(back->cnn.hidden, config.cnn.hidden);
      EXPECT_EQ(back->vit.patch, config.vit.patch);
      EXPECT_EQ(back->vit.dim, config.vit.dim);
      EXPECT_EQ(back->vit.depth, config.vit.depth);
      EXPECT_EQ(back->vit.heads, config.vit.heads);
      EXPECT_EQ(back->vit.mlp_ratio, config.vit.mlp_ratio);
      EXPECT_EQ(back->image_channels, 2);
      EXPECT_EQ(back->image_height, config.image_height);
      EXPECT_EQ(back->image_width, config.image_width);
      EXPECT_EQ(back->num_classes, config.num_classes);
    }
  }
}

TEST(CheckpointConfigTest, UnknownKindStringsAndInvalidValuesAreRefusedNamingTheField) {
  v1::ModelConfig message;
  ToProto(TinyConfig(BackboneKind::kVit), &message);

  v1::ModelConfig bad = message;
  bad.set_backbone("resnet");
  EXPECT_EQ(FromProto(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(FromProto(bad).status().message(), HasSubstr("unknown backbone 'resnet'"));

  bad = message;
  bad.set_head("");
  EXPECT_THAT(FromProto(bad).status().message(), HasSubstr("unknown head ''"));

  bad = message;
  bad.set_image_height(0);
  EXPECT_EQ(FromProto(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(FromProto(bad).status().message(), HasSubstr("image_height"));

  bad = message;
  bad.mutable_vit()->set_heads(3);
  EXPECT_THAT(FromProto(bad).status().message(), HasSubstr("heads"));

  // The unused sub-configs are not validated: an MLP checkpoint may leave the ViT's empty.
  bad = message;
  bad.set_backbone("mlp");
  bad.clear_vit();
  EXPECT_TRUE(FromProto(bad).ok()) << FromProto(bad).status();
}

TEST(CheckpointConfigTest, PetConfigRoundTripsAndRefusesUnknownKinds) {
  peft::PetConfig config;
  config.kind = peft::PetKind::kLora;
  config.site_prefixes = {"blocks.0", "blocks.1.attn"};
  config.ssf_init_stddev = 0.5f;
  config.adapter_bottleneck = 7;
  config.lora_rank = 3;
  config.lora_alpha = 6.0f;
  v1::PetConfig message;
  ToProto(config, &message);
  absl::StatusOr<peft::PetConfig> back = FromProto(message);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->kind, config.kind);
  EXPECT_EQ(back->site_prefixes, config.site_prefixes);
  EXPECT_EQ(back->ssf_init_stddev, config.ssf_init_stddev);
  EXPECT_EQ(back->adapter_bottleneck, config.adapter_bottleneck);
  EXPECT_EQ(back->lora_rank, config.lora_rank);
  EXPECT_EQ(back->lora_alpha, config.lora_alpha);

  v1::PetConfig bad = message;
  bad.set_kind("prefix");
  EXPECT_EQ(FromProto(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(FromProto(bad).status().message(), HasSubstr("unknown PET kind 'prefix'"));
  bad = message;
  bad.set_lora_rank(-3);
  EXPECT_THAT(FromProto(bad).status().message(), HasSubstr("lora_rank"));
  // 0 means "unset" in proto3: it takes the default rather than failing.
  v1::PetConfig sparse;
  sparse.set_kind("lora");
  ASSERT_TRUE(FromProto(sparse).ok());
  EXPECT_EQ(FromProto(sparse)->lora_rank, peft::PetConfig{}.lora_rank);
}

TEST(CheckpointTest, RoundTripReproducesEveryBackboneBitForBit) {
  for (BackboneKind kind : AllBackbones()) {
    for (nn::HeadKind head : {nn::HeadKind::kLinear, nn::HeadKind::kCosine}) {
      SCOPED_TRACE(KindName(kind));
      base::MemoryFileSystem fs;
      std::unique_ptr<nn::Model> model = MakeModel(TinyConfig(kind, 1, head), /*seed=*/3);
      ASSERT_TRUE(SaveCheckpoint(fs, kPath, *model, {}, SomeMetadata()).ok());

      absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs, kPath, kNoLimit);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      EXPECT_TRUE(loaded->modules.empty());
      EXPECT_EQ(loaded->model->config().backbone, kind);
      EXPECT_EQ(loaded->model->config().head, head);
      EXPECT_TRUE(BitIdentical(Outputs(*loaded->model), Outputs(*model)));
    }
  }
}

TEST(CheckpointTest, RoundTripRestoresSsfLoraAndAdapterModulesAttached) {
  base::MemoryFileSystem fs;
  std::unique_ptr<nn::Model> model = MakeModel(TinyConfig(BackboneKind::kVit));
  auto ssf = MakeModule(peft::PetKind::kSsf, "ssf.task0", *model);
  auto lora = MakeModule(peft::PetKind::kLora, "lora.task1", *model, {"blocks.1"});
  auto adapter = MakeModule(peft::PetKind::kAdapter, "adapter", *model, {"blocks.0"});
  for (auto* module : {ssf.get(), lora.get(), adapter.get()}) {
    ASSERT_TRUE(module->Attach(*model).ok());
  }
  const Matrix expected = Outputs(*model);
  ASSERT_TRUE(SaveCheckpoint(fs, kPath, *model, {ssf.get(), lora.get(), adapter.get()}, {}).ok());

  absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs, kPath, kNoLimit);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->modules.size(), 3u);
  const std::vector<const peft::PetModule*> originals = {ssf.get(), lora.get(), adapter.get()};
  for (size_t i = 0; i < originals.size(); ++i) {
    const peft::PetModule& restored = *loaded->modules[i];
    SCOPED_TRACE(restored.name());
    EXPECT_TRUE(restored.attached());
    EXPECT_EQ(restored.name(), originals[i]->name());
    EXPECT_EQ(restored.config().kind, originals[i]->config().kind);
    EXPECT_EQ(restored.config().site_prefixes, originals[i]->config().site_prefixes);
    EXPECT_TRUE(restored.parameters().CheckSameLayout(originals[i]->parameters()).ok());
    EXPECT_EQ(restored.parameters().flat_values(), originals[i]->parameters().flat_values());
  }
  // Backbone, head and the three modules, in stored order.
  std::vector<nn::ParameterSet*> sets = loaded->model->parameter_sets();
  ASSERT_EQ(sets.size(), 5u);
  EXPECT_EQ(sets[2], &loaded->modules[0]->parameters());
  EXPECT_EQ(sets[4], &loaded->modules[2]->parameters());
  EXPECT_TRUE(BitIdentical(Outputs(*loaded->model), expected));
}

TEST(CheckpointTest, TrainableFlagsAndMetadataAreRestoredAsStored) {
  base::MemoryFileSystem fs;
  std::unique_ptr<nn::Model> model = MakeModel(TinyConfig(BackboneKind::kCnn));
  model->SetBackboneTrainable(false);
  model->backbone().parameters().set_trainable(1, true);
  model->head().parameters().set_trainable(0, false);
  auto ssf = MakeModule(peft::PetKind::kSsf, "ssf", *model);
  ssf->parameters().set_trainable(0, false);
  ASSERT_TRUE(SaveCheckpoint(fs, kPath, *model, {ssf.get()}, SomeMetadata()).ok());

  absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs, kPath, kNoLimit);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto flags = [](const nn::ParameterSet& set) {
    std::vector<bool> out;
    for (int i = 0; i < set.num_tensors(); ++i) out.push_back(set.trainable(i));
    return out;
  };
  EXPECT_EQ(flags(loaded->model->backbone().parameters()), flags(model->backbone().parameters()));
  EXPECT_EQ(flags(loaded->model->head().parameters()), flags(model->head().parameters()));
  EXPECT_EQ(flags(loaded->modules[0]->parameters()), flags(ssf->parameters()));
  EXPECT_TRUE(loaded->model->backbone().parameters().trainable(1));
  EXPECT_FALSE(loaded->model->backbone().parameters().trainable(0));

  const CheckpointMetadata expected = SomeMetadata();
  EXPECT_EQ(loaded->metadata.classes, expected.classes);
  EXPECT_EQ(loaded->metadata.epochs, expected.epochs);
  EXPECT_EQ(loaded->metadata.test_accuracy, expected.test_accuracy);
  EXPECT_EQ(loaded->metadata.created_by, expected.created_by);
  EXPECT_EQ(loaded->metadata.extra, expected.extra);
}

TEST(CheckpointTest, AbsentTestAccuracyStaysAbsent) {
  base::MemoryFileSystem fs;
  std::unique_ptr<nn::Model> model = MakeModel(TinyConfig(BackboneKind::kMlp));
  ASSERT_TRUE(SaveCheckpoint(fs, kPath, *model, {}, {}).ok());
  absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs, kPath, kNoLimit);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->metadata.test_accuracy.has_value());
}

TEST_F(StoredCheckpointTest, TruncatedFileIsRefusedAtEveryLength) {
  absl::StatusOr<std::string> bytes = fs_.ReadFile(kPath);
  ASSERT_TRUE(bytes.ok());
  const size_t size = bytes->size();
  for (size_t length :
       {size_t{0}, size_t{7}, size_t{31}, size_t{32}, size_t{33}, size / 2, size - 100, size - 1}) {
    SCOPED_TRACE(length);
    fs_.SetFile(kPath, bytes->substr(0, length));
    ExpectLoadFails(absl::StatusCode::kDataLoss, "corrupt");
  }
}

TEST_F(StoredCheckpointTest, FlippedPayloadByteIsRefused) {
  absl::StatusOr<std::string> bytes = fs_.ReadFile(kPath);
  ASSERT_TRUE(bytes.ok());
  for (size_t offset : {kEnvelopeHeaderSize, kEnvelopeHeaderSize + 100, bytes->size() - 1}) {
    SCOPED_TRACE(offset);
    std::string damaged = *bytes;
    damaged[offset] ^= 0x10;
    fs_.SetFile(kPath, damaged);
    ExpectLoadFails(absl::StatusCode::kDataLoss, "payload checksum mismatch");
  }
}

TEST_F(StoredCheckpointTest, ConfigThatDoesNotMatchTheTensorsIsRefused) {
  EditStoredMessage(fs_,
                    [](v1::ModelCheckpoint& m) { m.mutable_config()->mutable_vit()->set_dim(16); });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "backbone does not match its config");

  ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *model_, {}, {}).ok());
  EditStoredMessage(
      fs_, [](v1::ModelCheckpoint& m) { m.mutable_config()->mutable_vit()->set_depth(1); });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "stores");

  ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *model_, {}, {}).ok());
  EditStoredMessage(fs_, [](v1::ModelCheckpoint& m) { m.mutable_config()->set_num_classes(5); });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "head does not match its config");
}

// A valid config is a few bytes however large the model it describes: one that needs far more
// values than the checkpoint stores is refused before the model is built (a fuzzed checkpoint
// declaring a ViT of width 65536 and depth 256 once made the loader allocate terabytes).
TEST_F(StoredCheckpointTest, AConfigFarLargerThanTheStoredValuesIsRefusedBeforeBuilding) {
  for (nn::BackboneKind kind : AllBackbones()) {
    ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *MakeModel(TinyConfig(kind)), {}, {}).ok());
    EditStoredMessage(fs_, [](v1::ModelCheckpoint& m) {
      m.mutable_config()->mutable_vit()->set_dim(65536);
      m.mutable_config()->mutable_vit()->set_depth(256);
      m.mutable_config()->mutable_vit()->set_heads(256);
      m.mutable_config()->mutable_mlp()->clear_hidden();
      m.mutable_config()->mutable_mlp()->add_hidden(65536);
      m.mutable_config()->mutable_mlp()->add_hidden(65536);
      m.mutable_config()->mutable_cnn()->set_hidden(65536);
      m.mutable_config()->set_image_height(4096);
      m.mutable_config()->set_image_width(4096);
    });
    ExpectLoadFails(absl::StatusCode::kInvalidArgument, "needs at least");
  }
}

TEST_F(StoredCheckpointTest, UnknownBackboneStringIsRefused) {
  EditStoredMessage(fs_,
                    [](v1::ModelCheckpoint& m) { m.mutable_config()->set_backbone("resnet"); });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "unknown backbone 'resnet'");
}

TEST_F(StoredCheckpointTest, NonFiniteValueIsRefusedInTheBackboneAndInAModule) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::string nan_bytes(reinterpret_cast<const char*>(&nan), sizeof(nan));
  EditStoredMessage(fs_, [&](v1::ModelCheckpoint& m) {
    m.mutable_backbone()->mutable_tensors(2)->mutable_data()->replace(0, 4, nan_bytes);
  });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "is not finite");

  ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *model_, {ssf_.get()}, {}).ok());
  EditStoredMessage(fs_, [&](v1::ModelCheckpoint& m) {
    m.mutable_modules(0)->mutable_parameters()->mutable_tensors(1)->mutable_data()->replace(
        4, 4, nan_bytes);
  });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "module 0 'ssf'");
}

TEST_F(StoredCheckpointTest, NewerFormatVersionIsRefusedAndAMissingOneIsInvalid) {
  EditStoredMessage(
      fs_, [](v1::ModelCheckpoint& m) { m.set_format_version(kCheckpointFormatVersion + 1); });
  ExpectLoadFails(absl::StatusCode::kFailedPrecondition, "newer fedcl");

  EditStoredMessage(fs_, [](v1::ModelCheckpoint& m) { m.clear_format_version(); });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "format_version");
}

TEST_F(StoredCheckpointTest, ModuleThatDoesNotAttachIsRefused) {
  // Two modules claiming the same SSF sites: each rebuilds, the second cannot attach.
  auto other = MakeModule(peft::PetKind::kSsf, "ssf.other", *model_);
  ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *model_, {ssf_.get(), other.get()}, {}).ok());
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "module 'ssf.other': ssf site");

  // A module whose tensors name sites this backbone lacks.
  ASSERT_TRUE(SaveCheckpoint(fs_, kPath, *model_, {ssf_.get()}, {}).ok());
  EditStoredMessage(fs_, [](v1::ModelCheckpoint& m) {
    for (v1::Tensor& tensor : *m.mutable_modules(0)->mutable_parameters()->mutable_tensors()) {
      tensor.set_name("missing." + tensor.name());
    }
  });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "module 'ssf': this vit backbone has no");
}

TEST_F(StoredCheckpointTest, InvalidMetadataIsRefused) {
  EditStoredMessage(fs_, [](v1::ModelCheckpoint& m) { m.mutable_metadata()->add_classes(3); });
  ExpectLoadFails(absl::StatusCode::kInvalidArgument, "class 3 is repeated");
}

TEST_F(StoredCheckpointTest, OtherPayloadKindsMissingFilesAndSizeLimitsAreRefused) {
  v1::ParameterSet set;
  ToProto(model_->head().parameters(), &set);
  ASSERT_TRUE(WriteEnvelope(fs_, "/state/head.params", PayloadKind::kParameterSet, set).ok());
  absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs_, "/state/head.params", kNoLimit);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), HasSubstr("wrong kind of payload"));

  EXPECT_EQ(LoadCheckpoint(fs_, "/state/none.ckpt", kNoLimit).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadCheckpoint(fs_, kPath, 64).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(StoredCheckpointTest, FailedAtomicWriteLeavesThePreviousCheckpointLoadable) {
  const Matrix before = Outputs(*model_);
  base::Rng rng(77);
  nn::testing::Randomize(model_->backbone().parameters(), rng);
  ASSERT_FALSE(BitIdentical(Outputs(*model_), before));

  fs_.FailNextWrites(1, absl::UnavailableError("disk unplugged"));
  absl::Status status = SaveCheckpoint(fs_, kPath, *model_, {ssf_.get()}, {});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);

  absl::StatusOr<LoadedCheckpoint> loaded = LoadCheckpoint(fs_, kPath, kNoLimit);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(BitIdentical(Outputs(*loaded->model), before));
  EXPECT_EQ(loaded->metadata.created_by, "checkpoint_test");
}

TEST_F(StoredCheckpointTest, SavingRefusesWhatCouldNotBeLoadedAndWritesNothing) {
  absl::StatusOr<std::string> before = fs_.ReadFile(kPath);
  ASSERT_TRUE(before.ok());

  model_->head().parameters().values(0)[1] = std::numeric_limits<float>::infinity();
  absl::Status status = SaveCheckpoint(fs_, kPath, *model_, {}, {});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not finite"));
  EXPECT_THAT(status.message(), HasSubstr(kPath));
  model_->head().parameters().values(0)[1] = 0.0f;

  status = SaveCheckpoint(fs_, kPath, *model_, {ssf_.get(), ssf_.get()}, {});
  EXPECT_THAT(status.message(), HasSubstr("used by an earlier module"));
  status = SaveCheckpoint(fs_, kPath, *model_, {nullptr}, {});
  EXPECT_THAT(status.message(), HasSubstr("null"));
  CheckpointMetadata metadata;
  metadata.test_accuracy = 1.5;
  status = SaveCheckpoint(fs_, kPath, *model_, {}, metadata);
  EXPECT_THAT(status.message(), HasSubstr("test_accuracy"));

  EXPECT_EQ(*fs_.ReadFile(kPath), *before);
}

}  // namespace
}  // namespace fedcl::proto
