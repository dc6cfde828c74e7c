#include "tools/pretrain/pretrainer.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "core/data/dataset.h"
#include "core/data/fashion_mnist.h"
#include "core/nn/training.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "tests/core/data/idx_test_util.h"

namespace fedcl::pretrain {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kDataDir[] = "/data/fashion-mnist";
constexpr int kTrainSamples = 400;
constexpr int kTestSamples = 100;

// Writes the four Fashion-MNIST files for `count` 28×28 images whose label is i % 10 (shuffled)
// and whose class shows as a bright horizontal band at rows 2c+2 .. 2c+4 over uniform noise.
void WriteFakeSplit(base::MemoryFileSystem& fs, const std::string& prefix, int count,
                    uint64_t seed) {
  base::Rng rng(seed);
  std::vector<uint8_t> labels(count);
  for (int i = 0; i < count; ++i) labels[i] = static_cast<uint8_t>(i % 10);
  rng.Shuffle(labels);
  std::vector<uint8_t> pixels;
  pixels.reserve(count * 28 * 28);
  for (int i = 0; i < count; ++i) {
    for (int row = 0; row < 28; ++row) {
      const bool band = row >= 2 * labels[i] + 2 && row < 2 * labels[i] + 5;
      for (int col = 0; col < 28; ++col) {
        const int noise = static_cast<int>(rng.UniformInt(80));
        pixels.push_back(static_cast<uint8_t>(band ? 170 + noise : noise));
      }
    }
  }
  const uint32_t n = static_cast<uint32_t>(count);
  fs.SetFile(base::JoinPath(kDataDir, prefix + "-images-idx3-ubyte.gz"),
             data::testutil::Gzip(data::testutil::EncodeIdx({n, 28, 28}, pixels)));
  fs.SetFile(base::JoinPath(kDataDir, prefix + "-labels-idx1-ubyte.gz"),
             data::testutil::Gzip(data::testutil::EncodeIdx({n}, labels)));
}

// A small MLP that learns the fake data in two epochs.
PretrainOptions MlpOptions(const std::string& output) {
  PretrainOptions options = PretrainOptions::ForBackbone(nn::BackboneKind::kMlp);
  options.model.mlp.hidden = {32};
  options.epochs = 2;
  options.batch_size = 32;
  options.learning_rate = 3e-3f;
  options.data_directory = kDataDir;
  options.output_path = output;
  options.eval_batch_size = 64;
  options.progress_interval = 5;
  return options;
}

class PretrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFakeSplit(fs_, "train", kTrainSamples, 1);
    WriteFakeSplit(fs_, "t10k", kTestSamples, 2);
  }

  absl::StatusOr<PretrainResult> Run(const PretrainOptions& options) {
    return Pretrain(options, fs_, log_, clock_);
  }

  // Accuracy of the checkpoint at `path` on the fake test split restricted to `classes`.
  double CheckpointAccuracy(const std::string& path, const std::vector<int>& classes,
                            int batch_size) {
    absl::StatusOr<proto::LoadedCheckpoint> loaded =
        proto::LoadCheckpoint(fs_, path, proto::kDefaultMaxCheckpointBytes);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (!loaded.ok()) return -1.0;
    data::FashionMnistOptions source;
    source.directory = kDataDir;
    absl::StatusOr<data::Dataset> test = data::LoadFashionMnist(fs_, source, data::Split::kTest);
    EXPECT_TRUE(test.ok()) << test.status();
    absl::StatusOr<data::Dataset> selected = data::SelectClasses(*test, classes, true);
    EXPECT_TRUE(selected.ok()) << selected.status();
    return nn::Evaluate(*loaded->model, selected->images, selected->labels, batch_size).accuracy;
  }

  base::MemoryFileSystem fs_;
  base::CapturingLogSink log_;
  base::ManualClock clock_;
};

TEST_F(PretrainerTest, MlpLearnsTheFakeClassesAndItsCheckpointReproducesTheAccuracy) {
  absl::StatusOr<PretrainResult> result = Run(MlpOptions("/out/mlp.ckpt"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->test_accuracy, 0.6);  // chance is 0.1
  EXPECT_EQ(result->test_samples, kTestSamples);
  EXPECT_EQ(result->train_samples, kTrainSamples);
  EXPECT_EQ(result->steps, 2 * 13);  // ceil(400 / 32) per epoch
  EXPECT_EQ(result->epoch_test_accuracy.size(), 2u);
  EXPECT_EQ(result->epoch_test_accuracy.back(), result->test_accuracy);
  EXPECT_GT(result->train_loss, 0.0);
  EXPECT_EQ(result->samples_per_second, 0.0);  // the manual clock never moved

  EXPECT_EQ(CheckpointAccuracy("/out/mlp.ckpt", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 64),
            result->test_accuracy);
  absl::StatusOr<proto::LoadedCheckpoint> loaded =
      proto::LoadCheckpoint(fs_, "/out/mlp.ckpt", proto::kDefaultMaxCheckpointBytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT(loaded->metadata.classes, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_EQ(loaded->metadata.epochs, 2);
  EXPECT_EQ(loaded->metadata.test_accuracy, result->test_accuracy);
  EXPECT_THAT(loaded->metadata.created_by, StartsWith("fedcl-pretrain: mlp, adamw"));
  EXPECT_EQ(loaded->metadata.extra["seed"], "1");
  EXPECT_TRUE(loaded->modules.empty());

  std::vector<std::string> lines;
  for (const auto& entry : log_.entries()) lines.push_back(entry.message);
  auto said = [&](const std::string& part) {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& line) { return absl::StrContains(line, part); });
  };
  EXPECT_TRUE(said("epoch 1/2 step 5/13: loss "));
  EXPECT_TRUE(said("epoch 2/2 done: train loss "));
  EXPECT_TRUE(said("wrote /out/mlp.ckpt"));
}

TEST_F(PretrainerTest, ClassSubsetIsRelabelledInTheGivenOrder) {
  PretrainOptions options = PretrainOptions::ForBackbone(nn::BackboneKind::kCnn);
  options.model.cnn = {4, 4, 16};
  options.classes = {7, 2, 5};
  options.epochs = 2;
  options.batch_size = 16;
  options.learning_rate = 0.02f;
  options.data_directory = kDataDir;
  options.output_path = "/out/cnn.ckpt";
  absl::StatusOr<PretrainResult> result = Run(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->train_samples, 3 * kTrainSamples / 10);
  EXPECT_EQ(result->test_samples, 3 * kTestSamples / 10);
  EXPECT_GT(result->test_accuracy, 0.6);  // chance is 1/3

  // Accuracy against labels relabelled 7 → 0, 2 → 1, 5 → 2 is what was reported, so the head's
  // outputs follow `classes` order.
  EXPECT_EQ(CheckpointAccuracy("/out/cnn.ckpt", {7, 2, 5}, options.eval_batch_size),
            result->test_accuracy);
  absl::StatusOr<proto::LoadedCheckpoint> loaded =
      proto::LoadCheckpoint(fs_, "/out/cnn.ckpt", proto::kDefaultMaxCheckpointBytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model->config().num_classes, 3);
  EXPECT_THAT(loaded->metadata.classes, ElementsAre(7, 2, 5));
}

TEST_F(PretrainerTest, TrainRangeLimitsTheSamplesSeen) {
  PretrainOptions options = MlpOptions("/out/range.ckpt");
  options.epochs = 1;
  options.train_begin = 100;
  options.train_end = 300;
  absl::StatusOr<PretrainResult> result = Run(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->train_samples, 200);
  EXPECT_EQ(result->steps, 7);  // ceil(200 / 32)

  options.train_end = kTrainSamples + 1;
  result = Run(options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("train range [100, 401)"));
}

TEST_F(PretrainerTest, SameOptionsGiveTheSameWeights) {
  ASSERT_TRUE(Run(MlpOptions("/out/a.ckpt")).ok());
  ASSERT_TRUE(Run(MlpOptions("/out/b.ckpt")).ok());
  auto a = proto::LoadCheckpoint(fs_, "/out/a.ckpt", proto::kDefaultMaxCheckpointBytes);
  auto b = proto::LoadCheckpoint(fs_, "/out/b.ckpt", proto::kDefaultMaxCheckpointBytes);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->model->backbone().parameters().flat_values(),
            b->model->backbone().parameters().flat_values());
  EXPECT_EQ(a->model->head().parameters().flat_values(),
            b->model->head().parameters().flat_values());

  // A different seed gives different weights.
  PretrainOptions options = MlpOptions("/out/c.ckpt");
  options.seed = 2;
  ASSERT_TRUE(Run(options).ok());
  auto c = proto::LoadCheckpoint(fs_, "/out/c.ckpt", proto::kDefaultMaxCheckpointBytes);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(a->model->backbone().parameters().flat_values().isApprox(
      c->model->backbone().parameters().flat_values(), 1e-2f));
}

TEST_F(PretrainerTest, DivergenceIsReportedAndNothingIsWritten) {
  PretrainOptions options = MlpOptions("/out/diverged.ckpt");
  options.optimizer = OptimizerKind::kSgd;
  options.learning_rate = 1e3f;
  absl::StatusOr<PretrainResult> result = Run(options);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("diverged"));
  EXPECT_FALSE(fs_.Exists("/out/diverged.ckpt"));
}

TEST_F(PretrainerTest, MissingDataIsNotFound) {
  PretrainOptions options = MlpOptions("/out/x.ckpt");
  options.data_directory = "/nowhere";
  EXPECT_EQ(Run(options).status().code(), absl::StatusCode::kNotFound);
}

TEST(PretrainOptionsTest, DefaultsAndBackboneDefaultsAreValid) {
  EXPECT_TRUE(PretrainOptions().Validate().ok());
  for (nn::BackboneKind kind :
       {nn::BackboneKind::kMlp, nn::BackboneKind::kCnn, nn::BackboneKind::kVit}) {
    PretrainOptions options = PretrainOptions::ForBackbone(kind);
    EXPECT_TRUE(options.Validate().ok()) << options.Validate();
    EXPECT_EQ(options.model.backbone, kind);
  }
  EXPECT_EQ(PretrainOptions::ForBackbone(nn::BackboneKind::kCnn).optimizer, OptimizerKind::kSgd);
}

TEST(PretrainOptionsTest, ValidationErrorsNameTheField) {
  const std::vector<std::pair<std::function<void(PretrainOptions&)>, std::string>> cases = {
      {[](PretrainOptions& o) { o.batch_size = 0; }, "batch_size"},
      {[](PretrainOptions& o) { o.epochs = 0; }, "epochs"},
      {[](PretrainOptions& o) { o.learning_rate = -1.0f; }, "learning_rate"},
      {[](PretrainOptions& o) { o.weight_decay = -0.1f; }, "weight_decay"},
      {[](PretrainOptions& o) { o.momentum = 1.0f; }, "momentum"},
      {[](PretrainOptions& o) { o.warmup_epochs = 6.0f; }, "warmup_epochs"},
      {[](PretrainOptions& o) { o.min_learning_rate = 1.0f; }, "min_learning_rate"},
      {[](PretrainOptions& o) { o.clip_grad_norm = -1.0f; }, "clip_grad_norm"},
      {[](PretrainOptions& o) { o.classes = {4}; }, "classes"},
      {[](PretrainOptions& o) {
         o.classes = {3, 3};
       },
       "3 is repeated"},
      {[](PretrainOptions& o) {
         o.classes = {1, 10};
       },
       "10 is not a Fashion-MNIST class"},
      {[](PretrainOptions& o) { o.train_begin = -1; }, "train_begin"},
      {[](PretrainOptions& o) { o.train_begin = 10, o.train_end = 10; }, "train_end"},
      {[](PretrainOptions& o) { o.model.vit.heads = 3; }, "heads"},
      {[](PretrainOptions& o) { o.model.image_height = 32; }, "28"},
      {[](PretrainOptions& o) { o.data_directory.clear(); }, "data_directory"},
      {[](PretrainOptions& o) { o.output_path.clear(); }, "output_path"},
      {[](PretrainOptions& o) { o.eval_batch_size = 0; }, "eval_batch_size"},
      {[](PretrainOptions& o) { o.progress_interval = -1; }, "progress_interval"},
  };
  for (const auto& [mutate, field] : cases) {
    SCOPED_TRACE(field);
    PretrainOptions options;
    mutate(options);
    absl::Status status = options.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("pretrain options: "));
    EXPECT_THAT(status.message(), HasSubstr(field));
  }
}

TEST(PretrainOptionsTest, ParsesOptimizerNamesAndDescribesClasses) {
  EXPECT_EQ(*ParseOptimizerKind("sgd"), OptimizerKind::kSgd);
  EXPECT_EQ(*ParseOptimizerKind("adamw"), OptimizerKind::kAdamW);
  EXPECT_THAT(ParseOptimizerKind("adam").status().message(), HasSubstr("unknown optimizer"));
  EXPECT_EQ(DescribeClasses({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), "0-9");
  EXPECT_EQ(DescribeClasses({7, 2, 5}), "7,2,5");
  EXPECT_EQ(DescribeClasses({3, 4}), "3,4");
}

}  // namespace
}  // namespace fedcl::pretrain
