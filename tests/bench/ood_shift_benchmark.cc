// OOD detection under the continual-learning shifts: how well each detector tells shifted
// Fashion-MNIST test images from clean ones, on a ViT pretrained on the clean domain.
//
//   build/bin/fedcl-pretrain --model=vit --epochs=5 --output=out/vit.ckpt
//   build/bin/fedcl_ood_shifts --backbone=out/vit.ckpt
//
// Every registered detector (core/ood/detector_registry.h, default options) is fitted on clean
// training images (--fit_samples), calibrated at 95% TPR on one half of the clean test set, and
// scored on the other half (ID) against the same images shifted (OOD). HDC hooks the CLS token
// after each block; the representation descriptor (RD, bottleneck 16) reads the token mean of the
// last block's input, as SEMA's descriptors at an expandable block do. Prints AUROC and FPR@95 per
// detector and shift, then the accuracy label-free adaptation (entropy minimisation on LayerNorm
// affine parameters, CEMA's filters) gains on each shifted stream and the fraction of samples it
// learned from.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/status_macros.h"
#include "core/cl/label_free.h"
#include "core/data/fashion_mnist.h"
#include "core/data/shifts.h"
#include "core/nn/loss.h"
#include "core/nn/training.h"
#include "core/nn/vit_backbone.h"
#include "core/ood/detector_registry.h"
#include "core/ood/ood_metrics.h"
#include "proto/checkpoint.h"

ABSL_FLAG(std::string, backbone, "out/vit.ckpt", "A ViT checkpoint pretrained on clean data.");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist", "Fashion-MNIST directory.");
ABSL_FLAG(int, fit_samples, 10000, "Clean training images the detectors are fitted on.");
ABSL_FLAG(int, test_samples, 4000, "Test images: half calibrate, half are scored (ID and OOD).");
ABSL_FLAG(int, rd_block, -1,
          "Block whose input's token mean the RD reads (-1 = the last block, SEMA's choice).");
ABSL_FLAG(bool, rd_on_cls, false, "RD reads the CLS token after --rd_block instead (comparison).");
ABSL_FLAG(bool, rd_on_tokens, false,
          "RD reads every token of --rd_block's input, flattened (position-aware; comparison).");
ABSL_FLAG(float, adapt_learning_rate, 1e-3f, "Label-free adaptation: SGD learning rate.");
ABSL_FLAG(int, adapt_batch, 64, "Label-free adaptation: unlabelled batch size.");
ABSL_FLAG(double, adapt_redundancy, 0.05, "Label-free adaptation: redundancy filter d (0 = off).");

namespace fedcl {
namespace {

struct Hooks {
  nn::Matrix logits, features, rd_input;
  std::vector<nn::Matrix> cls_after_block;
  ood::OodBatch Batch() const {
    ood::OodBatch b{.logits = &logits, .features = &features, .token_mean = &rd_input};
    for (const nn::Matrix& m : cls_after_block) b.layers.push_back(&m);
    return b;
  }
};

Hooks Collect(nn::Model& model, const nn::Matrix& images) {
  auto& vit = static_cast<nn::VitBackbone&>(model.backbone());
  Hooks h;
  const int64_t n = images.rows();
  h.logits.resize(n, model.config().num_classes);
  h.features.resize(n, vit.feature_dim());
  const bool all_tokens = absl::GetFlag(FLAGS_rd_on_tokens);
  h.rd_input.resize(n, all_tokens ? int64_t{vit.tokens()} * vit.feature_dim() : vit.feature_dim());
  h.cls_after_block.assign(vit.depth(), nn::Matrix(n, vit.feature_dim()));
  for (int64_t start = 0; start < n; start += 256) {
    const int64_t rows = std::min<int64_t>(256, n - start);
    h.logits.middleRows(start, rows) = model.Forward(images.middleRows(start, rows), false);
    h.features.middleRows(start, rows) = model.features();
    const int rd_block =
        absl::GetFlag(FLAGS_rd_block) < 0 ? vit.depth() - 1 : absl::GetFlag(FLAGS_rd_block);
    h.rd_input.middleRows(start, rows) = all_tokens ? vit.TokensOfBlockInput(rd_block)
                                         : absl::GetFlag(FLAGS_rd_on_cls)
                                             ? vit.ClsAfterBlock(rd_block)
                                             : vit.TokenMeanOfBlockInput(rd_block);
    for (int b = 0; b < vit.depth(); ++b)
      h.cls_after_block[b].middleRows(start, rows) = vit.ClsAfterBlock(b);
  }
  return h;
}

absl::Status Run() {
  base::FileSystem& fs = base::FileSystem::Default();
  FEDCL_ASSIGN_OR_RETURN(
      proto::LoadedCheckpoint loaded,
      proto::LoadCheckpoint(fs, absl::GetFlag(FLAGS_backbone), proto::kDefaultMaxCheckpointBytes));
  if (loaded.model->config().backbone != nn::BackboneKind::kVit) {
    return absl::InvalidArgumentError("the OOD benchmark needs a ViT checkpoint");
  }
  data::FashionMnistOptions options;
  options.directory = absl::GetFlag(FLAGS_data_dir);
  options.max_samples = absl::GetFlag(FLAGS_fit_samples);
  FEDCL_ASSIGN_OR_RETURN(data::Dataset train,
                         data::LoadFashionMnist(fs, options, data::Split::kTrain));
  options.max_samples = absl::GetFlag(FLAGS_test_samples);
  FEDCL_ASSIGN_OR_RETURN(data::Dataset test,
                         data::LoadFashionMnist(fs, options, data::Split::kTest));
  const int64_t half = test.size() / 2;
  data::Dataset calibration = test, scored = test;
  calibration.images = test.images.topRows(half);
  scored.images = test.images.bottomRows(test.size() - half);
  scored.labels.assign(test.labels.begin() + half, test.labels.end());

  nn::Model& model = *loaded.model;
  const Hooks fit = Collect(model, train.images);
  const Hooks calib = Collect(model, calibration.images);
  const Hooks id = Collect(model, scored.images);

  std::vector<std::unique_ptr<ood::OodDetector>> detectors;
  for (const std::string& name : ood::DetectorNames()) {
    FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<ood::OodDetector> d, ood::MakeDetector(name));
    FEDCL_RETURN_IF_ERROR(d->Fit(fit.Batch(), train.labels));
    FEDCL_RETURN_IF_ERROR(d->Calibrate(calib.Batch()));
    detectors.push_back(std::move(d));
  }
  std::printf(
      "ViT %s; fitted on %d clean training images, %lld calibration, %lld scored per side\n\n",
      absl::GetFlag(FLAGS_backbone).c_str(), train.size(), static_cast<long long>(half),
      static_cast<long long>(scored.size()));
  std::printf("| detector | shift | AUROC | FPR@95 | flagged (OOD) | flagged (ID) |\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  for (data::Shift shift :
       {data::Shift::kInversion, data::Shift::kRotation, data::Shift::kNoise, data::Shift::kBlur}) {
    data::Dataset shifted = scored;
    base::Rng rng(17);
    FEDCL_RETURN_IF_ERROR(data::ApplyShift(shift, shifted, rng));
    const Hooks ood = Collect(model, shifted.images);
    for (auto& d : detectors) {
      FEDCL_ASSIGN_OR_RETURN(std::vector<float> id_scores, d->Score(id.Batch()));
      FEDCL_ASSIGN_OR_RETURN(std::vector<float> ood_scores, d->Score(ood.Batch()));
      FEDCL_ASSIGN_OR_RETURN(double auroc, ood::Auroc(id_scores, ood_scores));
      FEDCL_ASSIGN_OR_RETURN(double fpr, ood::FprAt95Tpr(id_scores, ood_scores));
      int flagged_ood = 0, flagged_id = 0;
      for (float s : ood_scores) flagged_ood += d->IsOod(s);
      for (float s : id_scores) flagged_id += d->IsOod(s);
      std::printf("| %s | %s | %.4f | %.4f | %.3f | %.3f |\n", std::string(d->name()).c_str(),
                  std::string(data::ShiftName(shift)).c_str(), auroc, fpr,
                  flagged_ood / static_cast<double>(ood_scores.size()),
                  flagged_id / static_cast<double>(id_scores.size()));
    }
  }
  // Label-free adaptation on each shifted stream: each batch is predicted first (that is the
  // accuracy reported), then learned from if its samples pass CEMA's filters.
  std::printf(
      "\n| shift | accuracy, no adaptation | accuracy, label-free adaptation | gain | "
      "samples used |\n|---|---:|---:|---:|---:|\n");
  for (data::Shift shift : {data::Shift::kNone, data::Shift::kInversion, data::Shift::kRotation,
                            data::Shift::kNoise, data::Shift::kBlur}) {
    data::Dataset stream = scored;
    base::Rng rng(17);
    FEDCL_RETURN_IF_ERROR(data::ApplyShift(shift, stream, rng));
    FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint fresh,
                           proto::LoadCheckpoint(fs, absl::GetFlag(FLAGS_backbone),
                                                 proto::kDefaultMaxCheckpointBytes));
    const nn::EvalResult frozen = nn::Evaluate(*fresh.model, stream.images, stream.labels);
    cl::LabelFreeAdapter adapter(*fresh.model,
                                 {.learning_rate = absl::GetFlag(FLAGS_adapt_learning_rate),
                                  .filter = {.redundancy = absl::GetFlag(FLAGS_adapt_redundancy)}});
    const int batch = absl::GetFlag(FLAGS_adapt_batch);
    int64_t correct = 0, used = 0;
    std::vector<int32_t> predicted;
    for (int64_t start = 0; start < stream.size(); start += batch) {
      const int64_t rows = std::min<int64_t>(batch, stream.size() - start);
      const auto images = stream.images.middleRows(start, rows);
      nn::ArgmaxRows(fresh.model->Forward(images, false), predicted);
      for (int64_t i = 0; i < rows; ++i) correct += predicted[i] == stream.labels[start + i];
      FEDCL_ASSIGN_OR_RETURN(cl::AdaptStep step, adapter.Adapt(images));
      used += step.used;
    }
    const double adapted = correct / static_cast<double>(stream.size());
    std::printf("| %s | %.4f | %.4f | %+.4f | %.3f |\n",
                std::string(data::ShiftName(shift)).c_str(), frozen.accuracy, adapted,
                adapted - frozen.accuracy, used / static_cast<double>(stream.size()));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedcl

int main(int argc, char** argv) {
  if (!fedcl::base::ParseCommandLine(argc, argv, "fedcl_ood_shifts",
                                     "OOD detection of the continual-learning shifts.",
                                     "tests/bench/ood_shift")) {
    return 2;
  }
  absl::Status status = fedcl::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "fedcl_ood_shifts: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
