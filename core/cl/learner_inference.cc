// The Learner's inference side: predictions, OOD scores, label-free adaptation, and what it
// exchanges with the server.
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

constexpr float kCosineLogitScale = 16.0f;  // SimpleCIL: cosine similarities → logits
constexpr int64_t kChunk = 256;             // rows per inference forward

// Swaps the values of two sets of the same layout.
void SwapValues(nn::ParameterSet& a, nn::ParameterSet& b) { a.flat_values().swap(b.flat_values()); }

}  // namespace

ood::OodBatch Learner::Inspection::Batch(const ood::FeatureNeeds& needs) const {
  ood::OodBatch batch;
  if (needs.logits) batch.logits = &logits;
  if (needs.features) batch.features = &features;
  if (needs.layers) {
    for (const nn::Matrix& m : cls_after_block) batch.layers.push_back(&m);
  }
  if (needs.token_mean) batch.token_mean = &token_mean_last;
  return batch;
}

void Learner::CopyHooks(Inspection* hooks, int64_t start, int64_t rows) {
  hooks->features.middleRows(start, rows) = model_->features();
  if (model_->config().backbone != nn::BackboneKind::kVit) return;
  auto& backbone = static_cast<nn::VitBackbone&>(model_->backbone());
  hooks->token_mean_last.middleRows(start, rows) =
      backbone.TokenMeanOfBlockInput(backbone.depth() - 1);
  for (int b = 0; b < backbone.depth(); ++b)
    hooks->cls_after_block[b].middleRows(start, rows) = backbone.ClsAfterBlock(b);
}

absl::StatusOr<nn::Matrix> Learner::ChunkLogits(nn::ConstMatrixRef images, Inspection* hooks,
                                                int64_t start) {
  const int64_t rows = images.rows();
  if (options_.method == ClMethod::kFedIns) return FedInsLogits(images, hooks, start);
  if (options_.method == ClMethod::kSimpleCil) {
    model_->Forward(images, false);
    CopyHooks(hooks, start, rows);
    if (prototypes_->classes() == 0)
      return absl::FailedPreconditionError("SimpleCIL has no class prototypes yet");
    FEDCL_ASSIGN_OR_RETURN(nn::Matrix similarities, prototypes_->Similarities(model_->features()));
    nn::Matrix logits = nn::Matrix::Constant(images.rows(), model_->config().num_classes, -1e9f);
    logits.leftCols(similarities.cols()) = kCosineLogitScale * similarities;
    return logits;
  }
  if (options_.method == ClMethod::kLae && offline_.has_value() &&
      lae_inference_ == LaeInference::kOffline) {
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    nn::Matrix logits = model_->Forward(images, false);
    CopyHooks(hooks, start, rows);
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    return logits;
  }
  if (options_.method == ClMethod::kLae && offline_.has_value() &&
      lae_inference_ == LaeInference::kEnsemble) {
    // Offline expert first, so that the hooks the caller reads are the online forward's.
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    const nn::Matrix offline_logits = model_->Forward(images, false);
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    const nn::Matrix online_logits = model_->Forward(images, false);
    CopyHooks(hooks, start, rows);
    nn::Matrix p_on, p_off;
    nn::Softmax(online_logits, p_on);
    nn::Softmax(offline_logits, p_off);
    // log of the element-wise max: its argmax and softmax-free scores are the ensemble's.
    return nn::Matrix(p_on.cwiseMax(p_off).array().max(1e-30f).log().matrix());
  }
  nn::Matrix logits = model_->Forward(images, false);
  CopyHooks(hooks, start, rows);
  return logits;
}

absl::StatusOr<Learner::Inspection> Learner::Inspect(nn::ConstMatrixRef images) {
  Inspection out;
  const int64_t n = images.rows();
  const bool vit = model_->config().backbone == nn::BackboneKind::kVit;
  auto* backbone = vit ? &static_cast<nn::VitBackbone&>(model_->backbone()) : nullptr;
  const int dim = model_->backbone().feature_dim();
  out.logits.resize(n, model_->config().num_classes);
  out.features.resize(n, dim);
  if (vit) {
    out.token_mean_last.resize(n, dim);
    out.cls_after_block.assign(backbone->depth(), nn::Matrix(n, dim));
  }
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t rows = std::min(kChunk, n - start);
    FEDCL_ASSIGN_OR_RETURN(nn::Matrix logits,
                           ChunkLogits(images.middleRows(start, rows), &out, start));
    out.logits.middleRows(start, rows) = logits;
  }
  return out;
}

absl::Status Learner::PredictInto(nn::ConstMatrixRef images, absl::Span<Prediction> out) {
  if (static_cast<int64_t>(out.size()) != images.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PredictInto: ", images.rows(), " images for ", out.size(), " predictions"));
  }
  const bool single_forward = options_.method == ClMethod::kLinearHead ||
                              options_.method == ClMethod::kSequentialAdapter || IsSema(method());
  const bool logit_detector = detector_ == nullptr || detector_needs_.LogitsOnly();
  if (!single_forward || !logit_detector || images.rows() > kChunk) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<Prediction> predictions, Predict(images));
    std::copy(predictions.begin(), predictions.end(), out.begin());
    return absl::OkStatus();
  }
  const nn::Matrix& logits = model_->Forward(images, false);
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
      model_->config().backbone != nn::BackboneKind::kVit) {
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
  for (int64_t i = 0; i < probabilities.rows(); ++i) {
    Eigen::Index label;
    probabilities.row(i).maxCoeff(&label);
    out[i].label = static_cast<int>(label);
    // LAE: the ensemble's own confidence, max_c max(p_on, p_off) = exp of the top logit.
    out[i].confidence = options_.method == ClMethod::kLae && offline_.has_value() &&
                                lae_inference_ == LaeInference::kEnsemble
                            ? std::exp(inspection.logits(i, label))
                            : probabilities(i, label);
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
  std::vector<std::vector<bool>> saved;
  for (nn::ParameterSet* set : model_->parameter_sets()) {
    std::vector<bool> flags(set->num_tensors());
    for (int i = 0; i < set->num_tensors(); ++i) flags[i] = set->trainable(i);
    saved.push_back(std::move(flags));
  }
  if (label_free_ == nullptr) {
    label_free_ = std::make_unique<LabelFreeAdapter>(*model_, options_.label_free);
  } else {
    label_free_->MarkTrainable();
  }
  absl::StatusOr<AdaptStep> step = label_free_->Adapt(images);
  const std::vector<nn::ParameterSet*> sets = model_->parameter_sets();
  for (size_t s = 0; s < sets.size(); ++s)
    for (int i = 0; i < sets[s]->num_tensors(); ++i) sets[s]->set_trainable(i, saved[s][i]);
  return step;
}

std::vector<nn::ParameterSet*> Learner::SharedModules() {
  if (options_.method == ClMethod::kFedIns) {
    std::vector<nn::ParameterSet*> out = {&keys_};
    for (auto& s : ssf_pool_) out.push_back(&s);
    for (auto& s : head_pool_) out.push_back(&s);
    return out;
  }
  std::vector<nn::ParameterSet*> out = {&model_->head().parameters()};
  if (adapter_ != nullptr) out.push_back(&adapter_->parameters());
  for (auto& b : blocks_)
    for (int e = 0; e < b->mixture.experts(); ++e) out.push_back(&b->mixture.expert(e));
  return out;
}

std::vector<ModuleProposal> Learner::TakeProposals() {
  std::vector<ModuleProposal> out = std::move(proposals_);
  proposals_.clear();
  return out;
}

absl::StatusOr<Learner::Block*> Learner::FindBlock(int block) {
  for (auto& b : blocks_)
    if (b->index == block) return b.get();
  return absl::InvalidArgumentError(
      absl::StrCat("block ", block, " is not an expandable block of this learner"));
}

absl::Status Learner::ImportExpert(int block, int index, const nn::ParameterSet& values) {
  FEDCL_ASSIGN_OR_RETURN(Block * b, FindBlock(block));
  if (index < 0 || index >= b->mixture.experts())
    return absl::InvalidArgumentError(
        absl::StrCat("block ", block, " has ", b->mixture.experts(), " adapters, not ", index + 1));
  nn::ParameterSet& expert = b->mixture.expert(index);
  FEDCL_RETURN_IF_ERROR(expert.CheckSameLayout(values));
  if (!values.flat_values().allFinite())
    return absl::InvalidArgumentError("an imported adapter has non-finite values");
  expert.flat_values() = values.flat_values();
  return absl::OkStatus();
}

absl::StatusOr<int> Learner::AddPooledExpert(int block, const nn::ParameterSet& values,
                                             const nn::ParameterSet* descriptor) {
  FEDCL_ASSIGN_OR_RETURN(Block * b, FindBlock(block));
  std::optional<SharedDescriptor> shared;
  if (descriptor != nullptr) {
    FEDCL_ASSIGN_OR_RETURN(shared, DescriptorFromParameters(*descriptor, b->mixture.dim(),
                                                            options_.descriptor_bottleneck));
  }
  const int64_t bytes =
      b->mixture.expert_bytes() +
      (shared.has_value() ? shared->rd.num_parameters() * int64_t{sizeof(float)} : int64_t{0});
  FEDCL_RETURN_IF_ERROR(budget_.Check(block, b->mixture.experts(), bytes, ModuleBytes()));
  if (!values.flat_values().allFinite())
    return absl::InvalidArgumentError("a pooled adapter has non-finite values");
  FEDCL_ASSIGN_OR_RETURN(int index, b->mixture.AddExpert(values));
  b->mixture.expert(index).SetAllTrainable(false);
  if (shared.has_value())
    b->AddDescriptor(std::move(shared->rd), std::move(shared->records), index);
  return index;
}

bool Learner::ExpertHasDescriptor(int block, int index) const {
  for (const auto& b : blocks_)
    if (b->index == block) return b->DescriptorOf(index) >= 0;
  return false;
}

absl::Status Learner::AttachPooledDescriptor(int block, int index,
                                             const nn::ParameterSet& descriptor) {
  FEDCL_ASSIGN_OR_RETURN(Block * b, FindBlock(block));
  if (index < 0 || index >= b->mixture.experts()) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", block, " has ", b->mixture.experts(), " adapters, not ", index + 1));
  }
  if (ExpertHasDescriptor(block, index)) {
    return absl::InvalidArgumentError(
        absl::StrCat("adapter ", index, " of block ", block, " already has a descriptor"));
  }
  FEDCL_ASSIGN_OR_RETURN(
      SharedDescriptor shared,
      DescriptorFromParameters(descriptor, b->mixture.dim(), options_.descriptor_bottleneck));
  const int64_t bytes = shared.rd.num_parameters() * int64_t{sizeof(float)};
  const int64_t budget = options_.growth.memory_budget_bytes;
  if (budget > 0 && ModuleBytes() + bytes > budget) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a pooled descriptor of ", bytes,
                     " bytes would take the modules past the budget of ", budget, " bytes"));
  }
  b->AddDescriptor(std::move(shared.rd), std::move(shared.records), index);
  return absl::OkStatus();
}

std::optional<nn::ParameterSet> Learner::ExpertDescriptor(int block, int index) const {
  for (const auto& b : blocks_) {
    if (b->index != block) continue;
    const int k = b->DescriptorOf(index);
    if (k < 0 || !b->records[k].frozen()) return std::nullopt;
    return DescriptorToParameters(b->descriptors[k], b->records[k]);
  }
  return std::nullopt;
}

nn::ParameterSet* Learner::Expert(int block, int index) {
  for (auto& b : blocks_)
    if (b->index == block && index >= 0 && index < b->mixture.experts())
      return &b->mixture.expert(index);
  return nullptr;
}

std::pair<int, int> Learner::SlotOf(const nn::ParameterSet* set) {
  for (auto& b : blocks_) {
    for (int e = 0; e < b->mixture.experts(); ++e)
      if (&b->mixture.expert(e) == set) return {b->index, e};
  }
  return {-1, -1};
}

std::vector<Learner::ExpertRef> Learner::Experts() {
  std::vector<ExpertRef> out;
  for (auto& b : blocks_)
    for (int e = 0; e < b->mixture.experts(); ++e)
      out.push_back({.block = b->index, .index = e, .values = &b->mixture.expert(e)});
  return out;
}

std::vector<int> Learner::AdaptersPerBlock() const {
  std::vector<int> out;
  for (const auto& b : blocks_) out.push_back(b->mixture.experts());
  return out;
}

int64_t Learner::ModuleBytes() const {
  int64_t values = model_->head().parameters().num_values();
  if (adapter_ != nullptr) values += adapter_->parameters().num_values();
  if (offline_.has_value()) values += offline_->offline().num_values();
  values += keys_.num_values();
  for (const auto& s : ssf_pool_) values += s.num_values();
  for (const auto& s : head_pool_) values += s.num_values();
  for (const auto& b : blocks_) {
    for (int e = 0; e < b->mixture.experts(); ++e) values += b->mixture.expert(e).num_values();
    for (const auto& rd : b->descriptors) values += rd.num_parameters();
  }
  return values * static_cast<int64_t>(sizeof(float));
}

}  // namespace fedcl::cl
