#include "tools/pretrain/pretrainer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/data/batching.h"
#include "core/data/dataset.h"
#include "core/data/fashion_mnist.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"
#include "core/nn/training.h"
#include "proto/checkpoint.h"

namespace fedcl::pretrain {
namespace {

// Decorrelates the sampler's stream from the weight initialisation, which uses `seed` itself.
constexpr uint64_t kSamplerSeedSalt = 0x73616d706c6572ULL;  // "sampler"

template <typename... Problem>
absl::Status Invalid(const Problem&... problem) {
  return absl::InvalidArgumentError(absl::StrCat("pretrain options: ", problem...));
}

absl::Status IntIn(absl::string_view field, int value, int lo, int hi) {
  if (value < lo || value > hi) {
    return Invalid(field, " must be in [", lo, ", ", hi, "], got ", value);
  }
  return absl::OkStatus();
}

// `value` in [lo, hi], or in (lo, hi] when `open_low`; NaN always fails.
absl::Status FloatIn(absl::string_view field, float value, float lo, float hi,
                     bool open_low = false) {
  const bool ok = std::isfinite(value) && (open_low ? value > lo : value >= lo) && value <= hi;
  if (!ok) {
    return Invalid(field, " must be in ", open_low ? "(" : "[", lo, ", ", hi, "], got ", value);
  }
  return absl::OkStatus();
}

absl::Status ValidateClasses(const std::vector<int>& classes) {
  if (classes.size() < 2) {
    return Invalid("classes needs at least two classes, got ", classes.size());
  }
  absl::flat_hash_set<int> seen;
  for (int c : classes) {
    if (c < 0 || c >= data::kFashionMnistNumClasses) {
      return Invalid("classes: ", c, " is not a Fashion-MNIST class (0-9)");
    }
    if (!seen.insert(c).second) return Invalid("classes: ", c, " is repeated");
  }
  return absl::OkStatus();
}

// What Pretrain trains and tests on. The training split stays whole; `train_indices` picks the
// samples in range and of the chosen classes, and `new_label` maps an original label to the
// head output (-1 for classes not trained).
struct Data {
  data::Dataset train;
  std::vector<int> train_indices;
  std::vector<int32_t> new_label;
  data::Dataset test;
};

absl::StatusOr<Data> LoadData(const PretrainOptions& options, const base::FileSystem& fs) {
  data::FashionMnistOptions source;
  source.directory = options.data_directory;
  Data d;
  FEDCL_ASSIGN_OR_RETURN(d.train, data::LoadFashionMnist(fs, source, data::Split::kTrain));
  const int end = options.train_end < 0 ? d.train.size() : options.train_end;
  if (end > d.train.size() || options.train_begin >= end) {
    return Invalid("the train range [", options.train_begin, ", ", end,
                   ") does not fit the training split of ", d.train.size(), " samples");
  }
  d.new_label.assign(d.train.num_classes, -1);
  for (size_t i = 0; i < options.classes.size(); ++i) {
    d.new_label[options.classes[i]] = static_cast<int32_t>(i);
  }
  for (int i = options.train_begin; i < end; ++i) {
    if (d.new_label[d.train.labels[i]] >= 0) d.train_indices.push_back(i);
  }
  if (d.train_indices.empty()) {
    return Invalid("the train range [", options.train_begin, ", ", end,
                   ") holds no sample of classes ", DescribeClasses(options.classes));
  }
  FEDCL_ASSIGN_OR_RETURN(data::Dataset test,
                         data::LoadFashionMnist(fs, source, data::Split::kTest));
  FEDCL_ASSIGN_OR_RETURN(d.test, data::SelectClasses(test, options.classes, /*relabel=*/true));
  return d;
}

std::unique_ptr<nn::Optimizer> MakeOptimizer(const PretrainOptions& options) {
  if (options.optimizer == OptimizerKind::kSgd) {
    return std::make_unique<nn::Sgd>(nn::SgdOptions{.learning_rate = options.learning_rate,
                                                    .momentum = options.momentum,
                                                    .weight_decay = options.weight_decay});
  }
  return std::make_unique<nn::AdamW>(nn::AdamWOptions{.learning_rate = options.learning_rate,
                                                      .weight_decay = options.weight_decay});
}

// Linear warmup over the first `warmup_steps` steps, then constant or cosine decay (PyTorch's
// CosineAnnealingLR over the remaining steps).
class Schedule {
 public:
  Schedule(const PretrainOptions& options, int64_t steps_per_epoch)
      : options_(options),
        total_steps_(steps_per_epoch * options.epochs),
        warmup_steps_(std::min<int64_t>(total_steps_,
                                        std::llround(options.warmup_epochs * steps_per_epoch))) {}

  float LearningRate(int64_t step) const {
    const double peak = options_.learning_rate;
    if (step < warmup_steps_) return static_cast<float>(peak * (step + 1) / warmup_steps_);
    if (!options_.cosine_schedule) return options_.learning_rate;
    const double t = static_cast<double>(step - warmup_steps_) / (total_steps_ - warmup_steps_);
    const double floor = options_.min_learning_rate;
    return static_cast<float>(floor +
                              0.5 * (peak - floor) * (1.0 + std::cos(std::numbers::pi * t)));
  }

 private:
  const PretrainOptions& options_;
  int64_t total_steps_;
  int64_t warmup_steps_;
};

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

double Rate(double samples, double seconds) { return seconds > 0.0 ? samples / seconds : 0.0; }

// "vit adamw lr 0.001 wd 0.05 ...": the settings that determine the weights.
std::string Summary(const PretrainOptions& options, const Data& data) {
  const int end = options.train_end < 0 ? data.train.size() : options.train_end;
  return absl::StrFormat(
      "%s, %s lr %g wd %g%s, batch %d, epochs %d, warmup %g, %s, clip %g, seed %d, classes %s, "
      "train samples [%d, %d)",
      nn::BackboneKindName(options.model.backbone), OptimizerKindName(options.optimizer),
      options.learning_rate, options.weight_decay,
      options.optimizer == OptimizerKind::kSgd ? absl::StrCat(" momentum ", options.momentum) : "",
      options.batch_size, options.epochs, options.warmup_epochs,
      options.cosine_schedule ? absl::StrCat("cosine to ", options.min_learning_rate) : "constant",
      options.clip_grad_norm, options.seed, DescribeClasses(options.classes), options.train_begin,
      end);
}

proto::CheckpointMetadata Metadata(const PretrainOptions& options, const Data& data,
                                   const PretrainResult& result) {
  proto::CheckpointMetadata metadata;
  metadata.classes = options.classes;
  metadata.epochs = options.epochs;
  metadata.test_accuracy = result.test_accuracy;
  metadata.created_by = absl::StrCat(options.created_by, ": ", Summary(options, data));
  const int end = options.train_end < 0 ? data.train.size() : options.train_end;
  metadata.extra = {
      {"seed", absl::StrCat(options.seed)},
      {"train_begin", absl::StrCat(options.train_begin)},
      {"train_end", absl::StrCat(end)},
      {"train_samples", absl::StrCat(result.train_samples)},
      {"train_loss", absl::StrCat(result.train_loss)},
      {"test_samples", absl::StrCat(result.test_samples)},
      {"test_loss", absl::StrCat(result.test_loss)},
  };
  return metadata;
}

// One training run: the epochs, their progress lines and evaluations. Fills everything in the
// result but the wall time.
class Trainer {
 public:
  Trainer(const PretrainOptions& options, const Data& data, nn::Model& model,
          base::LogSink& progress, base::Clock& clock)
      : options_(options),
        data_(data),
        model_(model),
        progress_(progress),
        clock_(clock),
        sampler_(static_cast<int>(data.train_indices.size()), options.batch_size,
                 base::MixBits(options.seed ^ kSamplerSeedSalt), /*shuffle=*/true,
                 /*drop_last=*/false),
        schedule_(options, sampler_.batches_per_epoch()),
        optimizer_(MakeOptimizer(options)) {}

  absl::StatusOr<PretrainResult> Run() {
    start_ = clock_.Now();
    result_.train_samples = sampler_.num_samples();
    for (int epoch = 0; epoch < options_.epochs; ++epoch) {
      const absl::Time epoch_start = clock_.Now();
      FEDCL_RETURN_IF_ERROR(TrainEpoch(epoch));
      const double seconds = Seconds(clock_.Now() - epoch_start);
      result_.train_seconds += seconds;
      Evaluate(epoch, seconds);
    }
    result_.samples_per_second =
        Rate(static_cast<double>(result_.train_samples) * options_.epochs, result_.train_seconds);
    return result_;
  }

 private:
  absl::Status TrainEpoch(int epoch) {
    const nn::TrainStepOptions step_options{.clip_grad_norm = options_.clip_grad_norm};
    double epoch_loss = 0.0;
    // A progress window never spans epochs: the steps after an epoch's last line are dropped
    // here rather than counted against the next epoch's time.
    window_start_ = clock_.Now();
    window_loss_ = 0.0;
    window_samples_ = 0;
    for (int step = 0; sampler_.Next(&positions_); ++step) {
      indices_.resize(positions_.size());
      for (size_t i = 0; i < positions_.size(); ++i) {
        indices_[i] = data_.train_indices[positions_[i]];
      }
      FEDCL_RETURN_IF_ERROR(data::GatherBatch(data_.train, indices_, &images_, &labels_));
      for (int32_t& label : labels_) label = data_.new_label[label];
      optimizer_->set_learning_rate(schedule_.LearningRate(result_.steps));
      const float loss = nn::TrainStep(model_, *optimizer_, images_, labels_, step_options);
      if (!std::isfinite(loss)) {
        return absl::FailedPreconditionError(
            absl::StrCat("training diverged: the loss is ", loss, " at epoch ", epoch + 1, " step ",
                         step + 1, " (try a lower learning rate or clipping)"));
      }
      ++result_.steps;
      epoch_loss += static_cast<double>(loss) * labels_.size();
      window_loss_ += static_cast<double>(loss) * labels_.size();
      window_samples_ += static_cast<int64_t>(labels_.size());
      if (options_.progress_interval > 0 && (step + 1) % options_.progress_interval == 0) {
        LogProgress(epoch, step);
      }
    }
    result_.train_loss = epoch_loss / sampler_.num_samples();
    return absl::OkStatus();
  }

  // The progress line after `step`, over the steps since the previous line.
  void LogProgress(int epoch, int step) {
    const absl::Time now = clock_.Now();
    progress_.Write(
        base::LogLevel::kInfo,
        absl::StrFormat("epoch %d/%d step %d/%d: loss %.4f, lr %.3g, %.0f samples/s, "
                        "%.1f s elapsed",
                        epoch + 1, options_.epochs, step + 1, sampler_.batches_per_epoch(),
                        window_loss_ / window_samples_, optimizer_->learning_rate(),
                        Rate(window_samples_, Seconds(now - window_start_)),
                        Seconds(now - start_)));
    window_start_ = now;
    window_loss_ = 0.0;
    window_samples_ = 0;
  }

  void Evaluate(int epoch, double epoch_seconds) {
    const nn::EvalResult eval =
        nn::Evaluate(model_, data_.test.images, data_.test.labels, options_.eval_batch_size);
    result_.test_accuracy = eval.accuracy;
    result_.test_loss = eval.loss;
    result_.test_samples = eval.samples;
    result_.epoch_test_accuracy.push_back(eval.accuracy);
    progress_.Write(
        base::LogLevel::kInfo,
        absl::StrFormat("epoch %d/%d done: train loss %.4f, test accuracy %.4f (loss %.4f, %d "
                        "images), %.0f samples/s, %.1f s elapsed",
                        epoch + 1, options_.epochs, result_.train_loss, eval.accuracy, eval.loss,
                        eval.samples, Rate(result_.train_samples, epoch_seconds),
                        Seconds(clock_.Now() - start_)));
  }

  const PretrainOptions& options_;
  const Data& data_;
  nn::Model& model_;
  base::LogSink& progress_;
  base::Clock& clock_;
  data::BatchSampler sampler_;
  Schedule schedule_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  PretrainResult result_;
  absl::Time start_;
  // Since the last progress line.
  absl::Time window_start_;
  double window_loss_ = 0.0;
  int64_t window_samples_ = 0;
  // Reused batch buffers.
  std::vector<int> positions_, indices_;
  nn::Matrix images_;
  std::vector<int32_t> labels_;
};

}  // namespace

absl::string_view OptimizerKindName(OptimizerKind kind) {
  return kind == OptimizerKind::kSgd ? "sgd" : "adamw";
}

absl::StatusOr<OptimizerKind> ParseOptimizerKind(absl::string_view name) {
  if (name == "adamw") return OptimizerKind::kAdamW;
  if (name == "sgd") return OptimizerKind::kSgd;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown optimizer '", name, "' (expected adamw or sgd)"));
}

std::string DescribeClasses(const std::vector<int>& classes) {
  bool contiguous = classes.size() > 2;
  for (size_t i = 1; i < classes.size(); ++i) contiguous &= classes[i] == classes[i - 1] + 1;
  if (contiguous) return absl::StrCat(classes.front(), "-", classes.back());
  return absl::StrJoin(classes, ",");
}

PretrainOptions PretrainOptions::ForBackbone(nn::BackboneKind kind) {
  PretrainOptions options;
  options.model.backbone = kind;
  switch (kind) {
    case nn::BackboneKind::kVit:
      break;  // the struct's defaults
    case nn::BackboneKind::kCnn:
      options.optimizer = OptimizerKind::kSgd;
      options.learning_rate = 0.05f;
      options.momentum = 0.9f;
      options.weight_decay = 5e-4f;
      options.batch_size = 64;
      options.warmup_epochs = 0.0f;
      options.clip_grad_norm = 5.0f;
      break;
    case nn::BackboneKind::kMlp:
      options.learning_rate = 1e-3f;
      options.weight_decay = 1e-4f;
      options.warmup_epochs = 0.0f;
      options.clip_grad_norm = 0.0f;
      break;
  }
  return options;
}

absl::Status PretrainOptions::Validate() const {
  nn::ModelConfig config = model;
  config.num_classes = static_cast<int>(classes.size());
  FEDCL_RETURN_IF_ERROR(ValidateClasses(classes));
  absl::Status model_status = config.Validate();
  if (!model_status.ok()) return Invalid(model_status.message());
  if (model.image_channels != 1 || model.image_height != data::kFashionMnistHeight ||
      model.image_width != data::kFashionMnistWidth) {
    return Invalid("model images must be 1×28×28 for Fashion-MNIST, got ", model.image_channels,
                   "×", model.image_height, "×", model.image_width);
  }
  if (train_begin < 0) return Invalid("train_begin must be >= 0, got ", train_begin);
  if (train_end != -1 && train_end <= train_begin) {
    return Invalid("train_end must be -1 (to the end) or greater than train_begin ", train_begin,
                   ", got ", train_end);
  }
  FEDCL_RETURN_IF_ERROR(IntIn("epochs", epochs, 1, 10000));
  FEDCL_RETURN_IF_ERROR(IntIn("batch_size", batch_size, 1, 65536));
  FEDCL_RETURN_IF_ERROR(FloatIn("learning_rate", learning_rate, 0.0f, 1e3f, /*open_low=*/true));
  FEDCL_RETURN_IF_ERROR(FloatIn("weight_decay", weight_decay, 0.0f, 1e3f));
  if (!(momentum >= 0.0f && momentum < 1.0f)) {
    return Invalid("momentum must be in [0, 1), got ", momentum);
  }
  FEDCL_RETURN_IF_ERROR(FloatIn("warmup_epochs", warmup_epochs, 0.0f, epochs));
  FEDCL_RETURN_IF_ERROR(FloatIn("min_learning_rate", min_learning_rate, 0.0f, learning_rate));
  FEDCL_RETURN_IF_ERROR(FloatIn("clip_grad_norm", clip_grad_norm, 0.0f, 1e9f));
  if (data_directory.empty()) return Invalid("data_directory is empty");
  if (output_path.empty()) return Invalid("output_path is empty");
  FEDCL_RETURN_IF_ERROR(IntIn("eval_batch_size", eval_batch_size, 1, 65536));
  if (progress_interval < 0) {
    return Invalid("progress_interval must be >= 0, got ", progress_interval);
  }
  return absl::OkStatus();
}

absl::StatusOr<PretrainResult> Pretrain(const PretrainOptions& options, base::FileSystem& fs,
                                        base::LogSink& progress, base::Clock& clock) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  const absl::Time start = clock.Now();
  FEDCL_ASSIGN_OR_RETURN(Data data, LoadData(options, fs));
  nn::ModelConfig config = options.model;
  config.num_classes = static_cast<int>(options.classes.size());
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> model, nn::Model::Create(config, options.seed));
  const int64_t parameters =
      model->backbone().parameters().num_values() + model->head().parameters().num_values();
  progress.Write(base::LogLevel::kInfo,
                 absl::StrCat("pretraining ", nn::BackboneKindName(config.backbone), " (",
                              parameters, " parameters) on ", data.train_indices.size(),
                              " training images of classes ", DescribeClasses(options.classes),
                              ", testing on ", data.test.size(), "; ", Summary(options, data)));

  FEDCL_ASSIGN_OR_RETURN(PretrainResult result,
                         Trainer(options, data, *model, progress, clock).Run());
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(base::DirName(options.output_path)));
  FEDCL_RETURN_IF_ERROR(
      proto::SaveCheckpoint(fs, options.output_path, *model, {}, Metadata(options, data, result)));
  result.wall_seconds = Seconds(clock.Now() - start);
  progress.Write(base::LogLevel::kInfo, absl::StrCat("wrote ", options.output_path));
  return result;
}

}  // namespace fedcl::pretrain
