// Supervised pretraining of a backbone on Fashion-MNIST: the frozen starting point that every
// device of a federation later shares.
//
//   auto options = pretrain::PretrainOptions::ForBackbone(nn::BackboneKind::kCnn);
//   options.classes = {0, 1, 2, 3, 4};   // the other five stay unseen for continual work,
//   options.train_end = 30000;           // and so do training samples 30000..59999
//   options.output_path = "/state/cnn.ckpt";
//   FEDCL_RETURN_IF_ERROR(options.Validate());
//   FEDCL_ASSIGN_OR_RETURN(pretrain::PretrainResult result,
//                          pretrain::Pretrain(options, base::FileSystem::Default(),
//                                             base::LogSink::Stderr(), base::Clock::Real()));
//   // result.test_accuracy: on the test images of classes 0-4
//
// Pretrain loads the training split, keeps samples [train_begin, train_end) of it, then the
// samples of `classes`, relabelled so that classes[i] becomes label i (the checkpoint's metadata
// records the original ids). It trains every backbone and head tensor with the chosen optimizer
// and learning-rate schedule, visiting samples in the deterministic order of data::BatchSampler,
// evaluates on the test split restricted to the same classes after every epoch, and writes a
// checkpoint (proto/checkpoint.h) with no PET modules. The seed fixes the initial weights and
// the order of every epoch, so the same options and data give bit-identical weights.
//
// Progress goes to the LogSink as info lines: one every `progress_interval` steps (epoch, step,
// mean train loss since the last line, learning rate, samples/s, elapsed time) and one per epoch
// (train loss, test loss and accuracy). Time comes from the injected Clock only.
//
// Single-threaded; Pretrain is thread-safe if each call has its own output path.
#ifndef FEDCL_TOOLS_PRETRAIN_PRETRAINER_H_
#define FEDCL_TOOLS_PRETRAIN_PRETRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/clock.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "core/nn/model_config.h"

namespace fedcl::pretrain {

enum class OptimizerKind {
  kAdamW,  // nn::AdamW, decoupled weight decay
  kSgd,    // nn::Sgd with momentum, L2 weight decay
};

// "adamw" / "sgd".
absl::string_view OptimizerKindName(OptimizerKind kind);
absl::StatusOr<OptimizerKind> ParseOptimizerKind(absl::string_view name);

// "0-9" for three or more ascending consecutive classes, otherwise the ids joined with commas,
// e.g. "2,5,7".
std::string DescribeClasses(const std::vector<int>& classes);

struct PretrainOptions {
  // Defaults that train `kind` well from scratch on Fashion-MNIST in a few epochs:
  //   vit: AdamW lr 1e-3, weight decay 0.05, batch 128, half an epoch of warmup, clip 1.0;
  //   cnn: SGD momentum 0.9, lr 0.05, weight decay 5e-4, batch 64, no warmup, clip 5.0;
  //   mlp: AdamW lr 1e-3, weight decay 1e-4, batch 128, no warmup, no clipping;
  // with the default architecture of each (model_config.h), a cosine schedule and 5 epochs.
  static PretrainOptions ForBackbone(nn::BackboneKind kind);

  // ---- What to train --------------------------------------------------------------------------
  // The architecture. Images must be 1×28×28. num_classes is ignored: the head gets one output
  // per entry of `classes`.
  nn::ModelConfig model;
  // Fashion-MNIST class ids to train on, each in [0, 10), no repeats, at least two. Label
  // classes[i] becomes head output i.
  std::vector<int> classes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  // Train on training-set samples [train_begin, train_end) only (indices into the 60000, before
  // class selection); the rest stays unseen for later federated work. train_end -1 = to the end.
  int train_begin = 0;
  int train_end = -1;

  // ---- How -------------------------------------------------------------------------------------
  // Passes over the training samples, in [1, 10000].
  int epochs = 5;
  // Samples per step, in [1, 65536]. The last batch of an epoch may be smaller.
  int batch_size = 128;
  OptimizerKind optimizer = OptimizerKind::kAdamW;
  // Peak learning rate, > 0.
  float learning_rate = 1e-3f;
  // AdamW: decoupled (w ← w·(1 − lr·wd)); SGD: L2 added to the gradient. >= 0.
  float weight_decay = 0.05f;
  // SGD momentum, in [0, 1). Ignored by AdamW.
  float momentum = 0.9f;
  // Linear warmup from ~0 to learning_rate over this many epochs (fractions allowed), in
  // [0, epochs].
  float warmup_epochs = 0.5f;
  // After warmup: cosine decay from learning_rate towards min_learning_rate (PyTorch's
  // CosineAnnealingLR over the remaining steps); false keeps learning_rate constant.
  bool cosine_schedule = true;
  // Floor of the cosine schedule, in [0, learning_rate].
  float min_learning_rate = 0.0f;
  // Clip the joint gradient norm of each step to this (0 = no clipping), >= 0.
  float clip_grad_norm = 1.0f;
  // Seeds the initial weights and the order of every epoch.
  uint64_t seed = 1;

  // ---- Where -----------------------------------------------------------------------------------
  // Directory with the four Fashion-MNIST .gz files (data::FashionMnistOptions).
  std::string data_directory = "/usr/share/datasets/fashion-mnist";
  // The checkpoint to write (atomically; parent directories are created).
  std::string output_path = "pretrained.ckpt";
  // Recorded in the checkpoint's created_by, followed by a summary of these options.
  std::string created_by = "fedcl-pretrain";

  // ---- Reporting -------------------------------------------------------------------------------
  // Batch size for the per-epoch test evaluation, in [1, 65536].
  int eval_batch_size = 500;
  // A progress line every this many steps, >= 0 (0: only the per-epoch lines).
  int progress_interval = 100;

  // InvalidArgument naming the first bad field, e.g. "pretrain options: batch_size must be in
  // [1, 65536], got 0". Whether train_end fits the data is checked by Pretrain.
  absl::Status Validate() const;
};

struct PretrainResult {
  // Top-1 accuracy and mean cross-entropy on the test images of `classes`, after the last epoch.
  double test_accuracy = 0.0;
  double test_loss = 0.0;
  int64_t test_samples = 0;
  // Test accuracy after each epoch.
  std::vector<double> epoch_test_accuracy;
  // Mean training loss over the last epoch's steps.
  double train_loss = 0.0;
  // Training samples (after range and class selection) seen per epoch.
  int64_t train_samples = 0;
  int64_t steps = 0;
  // Wall time of the whole call (loading, training, evaluation, writing), and of the training
  // steps alone.
  double wall_seconds = 0.0;
  double train_seconds = 0.0;
  // Training throughput: samples through TrainStep per second of train_seconds (0 if no time
  // passed, as with a ManualClock).
  double samples_per_second = 0.0;
};

// Pretrains as described at the top of this file and writes options.output_path. Errors:
// InvalidArgument for invalid options (Validate) or a train range that does not fit the data or
// holds no sample of `classes`; data loading errors (NotFound for a missing file, ...) and
// checkpoint writing errors pass through; FailedPrecondition if training diverged (a non-finite
// loss), naming the epoch and step. The checkpoint is written only on success.
absl::StatusOr<PretrainResult> Pretrain(const PretrainOptions& options, base::FileSystem& fs,
                                        base::LogSink& progress, base::Clock& clock);

}  // namespace fedcl::pretrain

#endif  // FEDCL_TOOLS_PRETRAIN_PRETRAINER_H_
