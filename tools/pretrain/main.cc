// fedcl-pretrain: pretrains a backbone on Fashion-MNIST and writes a model checkpoint.
//
//   fedcl-pretrain --model=vit --epochs=5 --output=/state/vit.ckpt
//   fedcl-pretrain --model=cnn --classes=0-4 --train_end=30000 --output=/state/cnn-0-4.ckpt
//
// Hyperparameters left unset take the backbone's defaults (PretrainOptions::ForBackbone).
// Progress goes to stderr, the final result to stdout. Exit code 0 on success, 1 if pretraining
// failed, 2 for invalid flags.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/base/clock.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "core/base/status_macros.h"
#include "tools/pretrain/pretrainer.h"

ABSL_FLAG(std::string, model, "vit", "Backbone: vit, cnn or mlp.");
ABSL_FLAG(std::string, classes, "0-9",
          "Fashion-MNIST classes to train on: ids and ranges, e.g. 0-9, 0-4 or 0,2,5-7. Class "
          "classes[i] becomes head output i.");
ABSL_FLAG(int, train_begin, 0, "First training-set sample to train on.");
ABSL_FLAG(int, train_end, -1,
          "One past the last training-set sample to train on (-1: to the end); the rest stays "
          "unseen.");
ABSL_FLAG(int, epochs, 5, "Passes over the training samples.");
ABSL_FLAG(std::optional<int>, batch_size, std::nullopt,
          "Samples per step (default: vit 128, cnn 64, mlp 128).");
ABSL_FLAG(std::optional<std::string>, optimizer, std::nullopt,
          "adamw or sgd (default: sgd for cnn, else adamw).");
ABSL_FLAG(std::optional<float>, learning_rate, std::nullopt,
          "Peak learning rate (default: vit 1e-3, cnn 0.05, mlp 1e-3).");
ABSL_FLAG(std::optional<float>, weight_decay, std::nullopt,
          "Weight decay (default: vit 0.05, cnn 5e-4, mlp 1e-4).");
ABSL_FLAG(std::optional<float>, momentum, std::nullopt, "SGD momentum (default 0.9).");
ABSL_FLAG(std::optional<float>, warmup_epochs, std::nullopt,
          "Linear warmup, in epochs (default: vit 0.5, else 0).");
ABSL_FLAG(bool, cosine, true, "Cosine learning-rate decay after warmup (else constant).");
ABSL_FLAG(float, min_learning_rate, 0.0f, "Floor of the cosine schedule.");
ABSL_FLAG(std::optional<float>, clip_grad_norm, std::nullopt,
          "Gradient norm clip, 0 for none (default: vit 1, cnn 5, mlp 0).");
ABSL_FLAG(uint64_t, seed, 1, "Seeds the initial weights and the sample order.");
ABSL_FLAG(std::optional<std::string>, head, std::nullopt, "Head: linear (default) or cosine.");
ABSL_FLAG(std::optional<int>, vit_patch, std::nullopt, "ViT patch size (default 7).");
ABSL_FLAG(std::optional<int>, vit_dim, std::nullopt, "ViT embedding width (default 64).");
ABSL_FLAG(std::optional<int>, vit_depth, std::nullopt, "ViT transformer blocks (default 4).");
ABSL_FLAG(std::optional<int>, vit_heads, std::nullopt, "ViT attention heads (default 4).");
ABSL_FLAG(std::optional<int>, cnn_hidden, std::nullopt, "CNN fully connected width (default 128).");
ABSL_FLAG(std::optional<std::string>, mlp_hidden, std::nullopt,
          "MLP hidden widths, comma-separated (default 256,128).");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist",
          "Directory with the Fashion-MNIST .gz files.");
ABSL_FLAG(std::string, output, "pretrained.ckpt", "Checkpoint to write.");
ABSL_FLAG(int, eval_batch_size, 500, "Batch size for test evaluation.");
ABSL_FLAG(int, progress_interval, 100, "A progress line every this many steps (0: per epoch).");

namespace fedcl::pretrain {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadFlags = 2;

absl::StatusOr<int> ParseInt(absl::string_view flag, absl::string_view text) {
  int value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", text, "' is not an integer"));
  }
  return value;
}

// "0-4,7" → {0, 1, 2, 3, 4, 7}.
absl::StatusOr<std::vector<int>> ParseClasses(absl::string_view text) {
  std::vector<int> classes;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> bounds = absl::StrSplit(item, absl::MaxSplits('-', 1));
    FEDCL_ASSIGN_OR_RETURN(int first, ParseInt("classes", bounds[0]));
    int last = first;
    if (bounds.size() == 2) {
      FEDCL_ASSIGN_OR_RETURN(last, ParseInt("classes", bounds[1]));
    }
    if (last < first) {
      return absl::InvalidArgumentError(absl::StrCat("--classes: empty range '", item, "'"));
    }
    for (int c = first; c <= last; ++c) classes.push_back(c);
  }
  return classes;
}

absl::Status ApplyModelFlags(nn::ModelConfig& model) {
  if (auto head = absl::GetFlag(FLAGS_head)) {
    FEDCL_ASSIGN_OR_RETURN(model.head, nn::ParseHeadKind(*head));
  }
  if (auto v = absl::GetFlag(FLAGS_vit_patch)) model.vit.patch = *v;
  if (auto v = absl::GetFlag(FLAGS_vit_dim)) model.vit.dim = *v;
  if (auto v = absl::GetFlag(FLAGS_vit_depth)) model.vit.depth = *v;
  if (auto v = absl::GetFlag(FLAGS_vit_heads)) model.vit.heads = *v;
  if (auto v = absl::GetFlag(FLAGS_cnn_hidden)) model.cnn.hidden = *v;
  if (auto hidden = absl::GetFlag(FLAGS_mlp_hidden)) {
    model.mlp.hidden.clear();
    for (absl::string_view width : absl::StrSplit(*hidden, ',')) {
      FEDCL_ASSIGN_OR_RETURN(int value, ParseInt("mlp_hidden", width));
      model.mlp.hidden.push_back(value);
    }
  }
  return absl::OkStatus();
}

// PretrainOptions from the flags: the backbone's defaults, then whatever was set.
absl::StatusOr<PretrainOptions> OptionsFromFlags() {
  FEDCL_ASSIGN_OR_RETURN(nn::BackboneKind kind, nn::ParseBackboneKind(absl::GetFlag(FLAGS_model)));
  PretrainOptions options = PretrainOptions::ForBackbone(kind);
  FEDCL_RETURN_IF_ERROR(ApplyModelFlags(options.model));
  FEDCL_ASSIGN_OR_RETURN(options.classes, ParseClasses(absl::GetFlag(FLAGS_classes)));
  options.train_begin = absl::GetFlag(FLAGS_train_begin);
  options.train_end = absl::GetFlag(FLAGS_train_end);
  options.epochs = absl::GetFlag(FLAGS_epochs);
  if (auto v = absl::GetFlag(FLAGS_batch_size)) options.batch_size = *v;
  if (auto v = absl::GetFlag(FLAGS_optimizer)) {
    FEDCL_ASSIGN_OR_RETURN(options.optimizer, ParseOptimizerKind(*v));
  }
  if (auto v = absl::GetFlag(FLAGS_learning_rate)) options.learning_rate = *v;
  if (auto v = absl::GetFlag(FLAGS_weight_decay)) options.weight_decay = *v;
  if (auto v = absl::GetFlag(FLAGS_momentum)) options.momentum = *v;
  if (auto v = absl::GetFlag(FLAGS_warmup_epochs)) options.warmup_epochs = *v;
  options.cosine_schedule = absl::GetFlag(FLAGS_cosine);
  options.min_learning_rate = absl::GetFlag(FLAGS_min_learning_rate);
  if (auto v = absl::GetFlag(FLAGS_clip_grad_norm)) options.clip_grad_norm = *v;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.data_directory = absl::GetFlag(FLAGS_data_dir);
  options.output_path = absl::GetFlag(FLAGS_output);
  options.eval_batch_size = absl::GetFlag(FLAGS_eval_batch_size);
  options.progress_interval = absl::GetFlag(FLAGS_progress_interval);
  FEDCL_RETURN_IF_ERROR(options.Validate());
  return options;
}

int Run(int argc, char** argv) {
  if (!base::ParseCommandLine(
          argc, argv, "fedcl-pretrain",
          "Pretrains a backbone on Fashion-MNIST and writes a model checkpoint.\n"
          "  fedcl-pretrain --model=vit --epochs=5 --output=vit.ckpt",
          "tools/pretrain/")) {
    return kExitBadFlags;
  }
  absl::StatusOr<PretrainOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "fedcl-pretrain: %s\n", std::string(options.status().message()).c_str());
    return kExitBadFlags;
  }
  options->created_by = absl::StrCat("fedcl-pretrain ", FEDCL_VERSION, " ",
                                     absl::StrJoin(argv + 1, argv + argc, " "));
  absl::StatusOr<PretrainResult> result =
      Pretrain(*options, base::FileSystem::Default(), base::LogSink::Stderr(), base::Clock::Real());
  if (!result.ok()) {
    std::fprintf(stderr, "fedcl-pretrain: %s\n", result.status().ToString().c_str());
    return kExitFailure;
  }
  std::printf(
      "test accuracy %.4f on %lld images of classes %s after %d epoch%s (%.1f s, %.0f "
      "samples/s); wrote %s\n",
      result->test_accuracy, static_cast<long long>(result->test_samples),
      DescribeClasses(options->classes).c_str(), options->epochs, options->epochs == 1 ? "" : "s",
      result->wall_seconds, result->samples_per_second, options->output_path.c_str());
  return 0;
}

}  // namespace
}  // namespace fedcl::pretrain

int main(int argc, char** argv) { return fedcl::pretrain::Run(argc, argv); }
