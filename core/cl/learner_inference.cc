// The Learner's inference side: predictions with OOD scores, the detector, and label-free
// adaptation.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/learner.h"
#include "core/nn/loss.h"
#include "core/nn/vit_backbone.h"
#include "core/ood/detector_registry.h"

namespace fedcl::cl {
namespace {

constexpr int64_t kChunk = 256;  // rows per inference forward

}  // namespace

absl::StatusOr<Inspection> Learner::Inspect(nn::ConstMatrixRef images) {
  Inspection out;
  nn::Model& model = core_.model();
  const int64_t n = images.rows();
  const bool vit = model.config().backbone == nn::BackboneKind::kVit;
  auto* backbone = vit ? &static_cast<nn::VitBackbone&>(model.backbone()) : nullptr;
  const int dim = model.backbone().feature_dim();
  out.logits.resize(n, model.config().num_classes);
  out.features.resize(n, dim);
  if (vit) {
    out.token_mean_last.resize(n, dim);
    out.cls_after_block.assign(backbone->depth(), nn::Matrix(n, dim));
  }
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t rows = std::min(kChunk, n - start);
    FEDCL_ASSIGN_OR_RETURN(
        nn::Matrix logits,
        method_->ChunkLogits(core_, images.middleRows(start, rows), &out, start));
    out.logits.middleRows(start, rows) = logits;
  }
  return out;
}

absl::Status Learner::PredictInto(nn::ConstMatrixRef images, absl::Span<Prediction> out) {
  if (static_cast<int64_t>(out.size()) != images.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PredictInto: ", images.rows(), " images for ", out.size(), " predictions"));
  }
  const bool logit_detector = detector_ == nullptr || detector_needs_.LogitsOnly();
  if (!method_->single_forward() || !logit_detector || images.rows() > kChunk) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<Prediction> predictions, Predict(images));
    std::copy(predictions.begin(), predictions.end(), out.begin());
    return absl::OkStatus();
  }
  const nn::Matrix& logits = core_.model().Forward(images, false);
  nn::Softmax(logits, predict_probabilities_);
  for (int64_t i = 0; i < logits.rows(); ++i) {
    Eigen::Index label;
    predict_probabilities_.row(i).maxCoeff(&label);
    out[i] = Prediction{.label = static_cast<int>(label),
                        .confidence = predict_probabilities_(i, label)};
  }
  if (detector_ != nullptr) {
    predict_scores_.resize(out.size());
    FEDCL_RETURN_IF_ERROR(
        detector_->ScoreInto({.logits = &logits}, absl::MakeSpan(predict_scores_)));
    for (size_t i = 0; i < out.size(); ++i) {
      out[i].ood_score = predict_scores_[i];
      out[i].ood = detector_->IsOod(predict_scores_[i]);
    }
  }
  return absl::OkStatus();
}

absl::Status Learner::FitDetector(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
                                  nn::ConstMatrixRef held_out) {
  FEDCL_ASSIGN_OR_RETURN(const ood::DetectorInfo* info, ood::FindDetector(options_.ood_detector));
  if ((info->needs.layers || info->needs.token_mean) &&
      core_.model().config().backbone != nn::BackboneKind::kVit) {
    return absl::FailedPreconditionError(absl::StrCat("the OOD detector ", info->name, " reads ",
                                                      info->needs.Describe(),
                                                      ", which only a ViT backbone provides"));
  }
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<ood::OodDetector> detector,
                         info->create({.seed = options_.seed, .options = options_.ood_options}));
  FEDCL_ASSIGN_OR_RETURN(Inspection fit, Inspect(images));
  FEDCL_RETURN_IF_ERROR(detector->Fit(fit.Batch(info->needs), labels));
  FEDCL_ASSIGN_OR_RETURN(Inspection calibration, Inspect(held_out));
  FEDCL_RETURN_IF_ERROR(detector->Calibrate(calibration.Batch(info->needs)));
  detector_ = std::move(detector);
  detector_needs_ = info->needs;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Learner::OodScores(nn::ConstMatrixRef images) {
  if (detector_ == nullptr)
    return absl::FailedPreconditionError("the OOD detector has not been fitted (FitDetector)");
  FEDCL_ASSIGN_OR_RETURN(Inspection inspection, Inspect(images));
  return detector_->Score(inspection.Batch(detector_needs_));
}

absl::StatusOr<std::vector<Prediction>> Learner::Predict(nn::ConstMatrixRef images) {
  FEDCL_ASSIGN_OR_RETURN(Inspection inspection, Inspect(images));
  std::vector<Prediction> out(images.rows());
  nn::Matrix probabilities;
  nn::Softmax(inspection.logits, probabilities);
  const bool log_probabilities = method_->logits_are_log_probabilities();
  for (int64_t i = 0; i < probabilities.rows(); ++i) {
    Eigen::Index label;
    probabilities.row(i).maxCoeff(&label);
    out[i].label = static_cast<int>(label);
    // LAE: the ensemble's own confidence, max_c max(p_on, p_off) = exp of the top logit.
    out[i].confidence =
        log_probabilities ? std::exp(inspection.logits(i, label)) : probabilities(i, label);
  }
  if (detector_ != nullptr) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> scores,
                           detector_->Score(inspection.Batch(detector_needs_)));
    for (size_t i = 0; i < out.size(); ++i) {
      out[i].ood_score = scores[i];
      out[i].ood = detector_->IsOod(scores[i]);
    }
  }
  return out;
}

absl::StatusOr<AdaptStep> Learner::Adapt(nn::ConstMatrixRef images) {
  if (images.rows() == 0) return absl::InvalidArgumentError("an unlabelled batch is empty");
  nn::Model& model = core_.model();
  std::vector<std::vector<bool>> saved;
  for (nn::ParameterSet* set : model.parameter_sets()) {
    std::vector<bool> flags(set->num_tensors());
    for (int i = 0; i < set->num_tensors(); ++i) flags[i] = set->trainable(i);
    saved.push_back(std::move(flags));
  }
  if (label_free_ == nullptr) {
    label_free_ = std::make_unique<LabelFreeAdapter>(model, options_.label_free);
  } else {
    label_free_->MarkTrainable();
  }
  absl::StatusOr<AdaptStep> step = label_free_->Adapt(images);
  const std::vector<nn::ParameterSet*> sets = model.parameter_sets();
  for (size_t s = 0; s < sets.size(); ++s)
    for (int i = 0; i < sets[s]->num_tensors(); ++i) sets[s]->set_trainable(i, saved[s][i]);
  return step;
}

}  // namespace fedcl::cl
