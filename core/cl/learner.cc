#include "core/cl/learner.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/loss.h"
#include "core/nn/vit_backbone.h"
#include "core/ood/detector_registry.h"

namespace fedcl::cl {
namespace {

constexpr float kMasked = -1e9f;  // a masked logit: softmax 0, gradient 0, no NaN
constexpr int kMaxBufferedRows = 4096;

// Per-dimension mean and unbiased variance of the rows of z.
std::pair<Eigen::RowVectorXf, Eigen::RowVectorXf> DiagonalGaussian(const nn::Matrix& z) {
  const Eigen::RowVectorXf mean = z.colwise().mean();
  const Eigen::RowVectorXf var = (z.rowwise() - mean).array().square().colwise().sum() /
                                 static_cast<float>(std::max<int64_t>(1, z.rows() - 1));
  return {mean, var};
}

}  // namespace

absl::string_view ClMethodName(ClMethod method) {
  switch (method) {
    case ClMethod::kLinearHead:
      return "linear_head";
    case ClMethod::kSimpleCil:
      return "simple_cil";
    case ClMethod::kSequentialAdapter:
      return "sequential_adapter";
    case ClMethod::kLae:
      return "lae";
    case ClMethod::kSema:
      return "sema";
    case ClMethod::kSemaReplay:
      return "sema_replay";
    case ClMethod::kFedIns:
      return "fedins";
  }
  return "?";
}

absl::StatusOr<ClMethod> ParseClMethod(absl::string_view name) {
  for (ClMethod m : {ClMethod::kLinearHead, ClMethod::kSimpleCil, ClMethod::kSequentialAdapter,
                     ClMethod::kLae, ClMethod::kSema, ClMethod::kSemaReplay, ClMethod::kFedIns}) {
    if (ClMethodName(m) == name) return m;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown continual-learning method '", name,
      "' (expected linear_head, simple_cil, sequential_adapter, lae, sema, sema_replay or "
      "fedins)"));
}

absl::Status LearnerOptions::Validate() const {
  if (!(learning_rate > 0)) return absl::InvalidArgumentError("learning_rate must be positive");
  if (adapter_bottleneck < 1) return absl::InvalidArgumentError("adapter_bottleneck must be >= 1");
  if (!(expansion_tau > 0)) return absl::InvalidArgumentError("expansion_tau must be positive");
  if (confirm_batches < 1) return absl::InvalidArgumentError("confirm_batches must be >= 1");
  if (new_module_steps < 1) return absl::InvalidArgumentError("new_module_steps must be >= 1");
  if (fedins_top_k < 1 || fedins_top_k > fedins_pool_size)
    return absl::InvalidArgumentError("FedIns needs 1 <= fedins_top_k <= fedins_pool_size");
  if (!(fedins_matching_weight >= 0 && fedins_matching_weight < 1))
    return absl::InvalidArgumentError("fedins_matching_weight must be in [0, 1)");
  if (growth.max_adapters_per_block < 1)
    return absl::InvalidArgumentError("growth.max_adapters_per_block must be >= 1");
  if (!(lae_fraction_per_task > 0 && lae_fraction_per_task < 1) || lae_steps_per_task < 1)
    return absl::InvalidArgumentError(
        "LAE needs lae_fraction_per_task in (0, 1) and lae_steps_per_task >= 1");
  if (lae_untasked_task_steps < 0)
    return absl::InvalidArgumentError("lae_untasked_task_steps must be >= 0");
  // The detector exists and takes these options (making one parses them and draws nothing).
  return ood::MakeDetector(ood_detector, {.seed = seed, .options = ood_options}).status();
}

Learner::Learner(std::unique_ptr<nn::Model> model, const LearnerOptions& options)
    : options_(options),
      model_(std::move(model)),
      rng_(options.seed),
      sgd_({.learning_rate = options.learning_rate,
            .momentum = options.momentum,
            .weight_decay = options.weight_decay}),
      budget_(options.growth) {}

Learner::~Learner() {
  if (model_ == nullptr || model_->config().backbone != nn::BackboneKind::kVit) return;
  auto& vit = static_cast<nn::VitBackbone&>(model_->backbone());
  for (auto& b : blocks_) vit.block(b->index).adapter.SetExtension(nullptr);
}

absl::StatusOr<std::unique_ptr<Learner>> Learner::Create(std::unique_ptr<nn::Model> model,
                                                         const LearnerOptions& options) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  if (model == nullptr) return absl::InvalidArgumentError("a learner needs a model");
  std::unique_ptr<Learner> learner(new Learner(std::move(model), options));
  FEDCL_RETURN_IF_ERROR(learner->Init());
  return learner;
}

absl::Status Learner::Init() {
  model_->SetBackboneTrainable(false);
  const bool vit = model_->config().backbone == nn::BackboneKind::kVit;
  const int depth = vit ? static_cast<nn::VitBackbone&>(model_->backbone()).depth() : 0;
  auto check_blocks = [&](const std::vector<int>& blocks, const char* what) -> absl::Status {
    if (!vit) return absl::InvalidArgumentError(absl::StrCat(what, " needs a ViT backbone"));
    for (int b : blocks) {
      if (b < 0 || b >= depth)
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": block ", b, " is not a block of this ", depth, "-block ViT"));
    }
    return absl::OkStatus();
  };
  auto adapter_on = [&](const std::vector<int>& blocks) -> absl::Status {
    peft::PetConfig config{.kind = peft::PetKind::kAdapter};
    config.adapter_bottleneck = options_.adapter_bottleneck;
    for (int b : blocks) config.site_prefixes.push_back(absl::StrCat("blocks.", b));
    FEDCL_ASSIGN_OR_RETURN(adapter_,
                           peft::PetModule::Create("adapter", config, model_->backbone(), rng_));
    return adapter_->Attach(*model_);
  };
  switch (options_.method) {
    case ClMethod::kLinearHead:
      break;
    case ClMethod::kSimpleCil:
      prototypes_.emplace(model_->backbone().feature_dim());
      break;
    case ClMethod::kSequentialAdapter:
      FEDCL_RETURN_IF_ERROR(check_blocks(options_.expandable_blocks, "sequential_adapter"));
      FEDCL_RETURN_IF_ERROR(adapter_on(options_.expandable_blocks));
      break;
    case ClMethod::kLae:
      FEDCL_RETURN_IF_ERROR(check_blocks(options_.lae_blocks, "lae"));
      FEDCL_RETURN_IF_ERROR(adapter_on(options_.lae_blocks));
      break;
    case ClMethod::kSema:
    case ClMethod::kSemaReplay: {
      FEDCL_RETURN_IF_ERROR(check_blocks(options_.expandable_blocks, "sema"));
      auto& backbone = static_cast<nn::VitBackbone&>(model_->backbone());
      const int dim = backbone.feature_dim();
      for (int b : options_.expandable_blocks) {
        blocks_.push_back(std::make_unique<Block>(b, dim, options_.adapter_bottleneck));
        backbone.block(b).adapter.SetExtension(&blocks_.back()->mixture);
      }
      // Task 0: every block's first adapter is new (§4.4).

      for (size_t i = 0; i < blocks_.size(); ++i)
        FEDCL_RETURN_IF_ERROR(Grow(static_cast<int>(i), /*propose=*/false));
      break;
    }
    case ClMethod::kFedIns:
      FEDCL_RETURN_IF_ERROR(InitFedIns());
      break;
  }
  return absl::OkStatus();
}

std::vector<int> Learner::TaskClasses() const {
  std::vector<int> out;
  for (size_t c = 0; c < task_classes_.size(); ++c)
    if (task_classes_[c]) out.push_back(static_cast<int>(c));
  return out;
}

absl::Status Learner::SetTaskClasses(const std::vector<int>& classes) {
  const int num_classes = model_->config().num_classes;
  std::vector<bool> flags;
  if (!classes.empty()) {
    flags.assign(num_classes, false);
    for (int c : classes) {
      if (c < 0 || c >= num_classes)
        return absl::InvalidArgumentError(
            absl::StrCat("task class ", c, " is outside [0, ", num_classes, ")"));
      flags[c] = true;
    }
  }
  task_classes_ = std::move(flags);
  return absl::OkStatus();
}

absl::Status Learner::BeginTask(std::vector<int> classes) {
  const int num_classes = model_->config().num_classes;
  FEDCL_RETURN_IF_ERROR(SetTaskClasses(classes));
  ++task_;
  task_steps_ = 0;
  // Classes the finished task taught are now "old": SEMA's head no longer learns them.
  if (learned_classes_.empty()) learned_classes_.assign(num_classes, false);
  for (int c = 0; c < num_classes; ++c) {
    learned_classes_[c] =
        learned_classes_[c] || (c < static_cast<int>(task_labels_.size()) && task_labels_[c]);
  }
  task_labels_.assign(num_classes, false);
  if (options_.method == ClMethod::kLae && task_ == 1 && !offline_.has_value()) {
    FEDCL_ASSIGN_OR_RETURN(offline_, NewOffline());
  }
  return absl::OkStatus();
}

absl::StatusOr<EmaAccumulator> Learner::NewOffline() const {
  FEDCL_ASSIGN_OR_RETURN(
      double decay, DecayForFraction(options_.lae_fraction_per_task, options_.lae_steps_per_task));
  EmaAccumulator offline(decay);
  offline.Start(adapter_->parameters());
  return offline;
}

nn::Matrix Learner::MaskedLogits(const nn::Matrix& logits) const {
  nn::Matrix masked = logits;
  if (task_classes_.empty()) return masked;
  for (int c = 0; c < masked.cols(); ++c)
    if (!task_classes_[c]) masked.col(c).setConstant(kMasked);
  return masked;
}

float Learner::StepOn(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
                      const std::vector<nn::ParameterSet*>& sets) {
  for (nn::ParameterSet* s : sets) s->ZeroGrads();
  model_->ZeroGrads();
  const nn::Matrix logits = MaskedLogits(model_->Forward(images, /*training=*/true));
  nn::Matrix dlogits;
  const float loss = nn::SoftmaxCrossEntropy(logits, labels, &dlogits);
  model_->Backward(dlogits);
  if (IsSema(options_.method)) FreezeLearnedHeadRows();
  if (options_.method == ClMethod::kSemaReplay && growing_ >= 0) AddRouterReplayGradients();
  sgd_.Step(sets);
  ++task_steps_;
  return loss;
}

absl::StatusOr<LearnStats> Learner::Learn(nn::ConstMatrixRef images,
                                          absl::Span<const int32_t> labels) {
  const int num_classes = model_->config().num_classes;
  if (images.rows() != static_cast<int64_t>(labels.size()) || images.rows() == 0)
    return absl::InvalidArgumentError(absl::StrCat("a labelled batch needs as many labels (",
                                                   labels.size(), ") as images (", images.rows(),
                                                   "), and at least one"));
  for (int32_t y : labels) {
    if (y < 0 || y >= num_classes)
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is outside [0, ", num_classes, ")"));
    if (!task_classes_.empty() && !task_classes_[y])
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is not a class of the current task"));
  }
  if (task_labels_.empty()) task_labels_.assign(num_classes, false);
  for (int32_t y : labels) task_labels_[y] = true;
  LearnStats stats;
  nn::ParameterSet* head = &model_->head().parameters();
  switch (options_.method) {
    case ClMethod::kLinearHead:
      stats.loss = StepOn(images, labels, {head});
      break;
    case ClMethod::kSimpleCil: {
      // Running class means of the frozen features (prototypes never need gradients).
      model_->Forward(images, false);
      const nn::Matrix& features = model_->features();
      if (class_sums_.rows() == 0) {
        class_sums_ = nn::Matrix::Zero(num_classes, features.cols());
        class_counts_.assign(num_classes, 0);
      }
      for (int64_t i = 0; i < features.rows(); ++i) {
        class_sums_.row(labels[i]) += features.row(i);
        ++class_counts_[labels[i]];
      }
      FEDCL_RETURN_IF_ERROR(RebuildPrototypes());
      break;
    }
    case ClMethod::kSequentialAdapter:
      stats.loss = StepOn(images, labels, {head, &adapter_->parameters()});
      break;
    case ClMethod::kLae: {
      // Head-only warm-up at the start of every task after the first (adaptation-speed
      // calibration, §5.3), then head and online adapter; the offline copy follows every step.
      const bool warmup = task_ >= 1 && task_steps_ < options_.lae_warmup_steps;
      stats.loss = warmup ? StepOn(images, labels, {head})
                          : StepOn(images, labels, {head, &adapter_->parameters()});
      if (offline_.has_value()) FEDCL_RETURN_IF_ERROR(offline_->Update(adapter_->parameters()));
      // A host without task boundaries: the first "task" ends after lae_untasked_task_steps.
      if (!offline_.has_value() && task_ < 0 && options_.lae_untasked_task_steps > 0 &&
          task_steps_ >= options_.lae_untasked_task_steps) {
        FEDCL_ASSIGN_OR_RETURN(offline_, NewOffline());
      }
      break;
    }
    case ClMethod::kSema:
    case ClMethod::kSemaReplay:
      return LearnSema(images, labels);
    case ClMethod::kFedIns: {
      FEDCL_ASSIGN_OR_RETURN(stats.loss, LearnFedIns(images, labels));
      break;
    }
  }
  return stats;
}

void Learner::AddRouterReplayGradients() {
  for (auto& bp : blocks_) {
    Block& b = *bp;
    if (!b.growing) continue;
    const int m = b.mixture.experts();
    nn::ParameterSet& row = b.mixture.expert(b.growing_index);
    const int dim = b.mixture.dim();
    // Samples of every older adapter's Gaussian, each labelled with its adapter.
    std::vector<int> target;
    std::vector<Eigen::RowVectorXf> samples;
    for (int e = 0; e < m && e < static_cast<int>(b.anchor_mean.size()); ++e) {
      if (e == b.growing_index || b.anchor_mean[e].size() == 0) continue;
      for (int i = 0; i < options_.router_replay_samples; ++i) {
        Eigen::RowVectorXf z(dim);
        for (int d = 0; d < dim; ++d)
          z[d] = b.anchor_mean[e][d] +
                 std::sqrt(b.anchor_var[e][d]) * static_cast<float>(rng_.Normal());
        samples.push_back(std::move(z));
        target.push_back(e);
      }
    }
    if (samples.empty()) continue;
    // Cross-entropy of the mixing weights against the sample's adapter; only the new row is
    // trainable, so only its gradient is kept: dL/dlogit_new = p_new (the target is never new).
    const float scale = 1.0f / static_cast<float>(samples.size());
    Eigen::Map<Eigen::RowVectorXf> grad_w(row.grads(kExpertRouterWeight), dim);
    float& grad_b = row.grads(kExpertRouterBias)[0];
    for (const Eigen::RowVectorXf& z : samples) {
      Eigen::VectorXf logits(m);
      for (int e = 0; e < m; ++e) {
        const nn::ParameterSet& x = b.mixture.expert(e);
        logits[e] =
            Eigen::Map<const Eigen::RowVectorXf>(x.values(kExpertRouterWeight), dim).dot(z) +
            x.values(kExpertRouterBias)[0];
      }
      const Eigen::VectorXf p = (logits.array() - logits.maxCoeff()).exp();
      const float p_new = p[b.growing_index] / p.sum();
      grad_w += scale * p_new * z;
      grad_b += scale * p_new;
    }
  }
}

void Learner::FreezeLearnedHeadRows() {
  // SEMA (§4.4): old classes' logits get no gradient (their rows only see weight decay). In a
  // class-incremental task the mask already keeps them out of the loss; in a domain-incremental
  // one every class is old after the first task, so the head stays as task 0 left it and new
  // domains are learned by new adapters alone.
  nn::ParameterSet& head = model_->head().parameters();
  for (int t = 0; t < head.num_tensors(); ++t) {
    if (!head.trainable(t)) continue;
    const int64_t per_class = head.info(t).size / model_->config().num_classes;
    for (size_t c = 0; c < learned_classes_.size(); ++c) {
      if (!learned_classes_[c]) continue;
      std::fill_n(head.grads(t) + c * per_class, per_class, 0.0f);
    }
  }
}

absl::StatusOr<LearnStats> Learner::LearnSema(nn::ConstMatrixRef images,
                                              absl::Span<const int32_t> labels) {
  LearnStats stats;
  if (growing_ < 0) {
    // Detection on this batch: an eval forward, then every adapter's batch-mean z-score.
    stats.detected = true;
    model_->Forward(images, false);
    for (size_t i = 0; i < blocks_.size(); ++i) {
      Block& b = *blocks_[i];
      const nn::Matrix& z = b.mixture.router_input();
      std::vector<std::vector<double>> z_scores(b.descriptors.size());
      for (size_t a = 0; a < b.descriptors.size(); ++a) {
        for (float loss : b.descriptors[a].Losses(z))
          z_scores[a].push_back(b.records[a].ZScore(loss));
      }
      b.consecutive = ShouldExpand(z_scores, options_.expansion_tau) ? b.consecutive + 1 : 0;
      b.window.push_back(z);
      if (static_cast<int>(b.window.size()) > options_.confirm_batches)
        b.window.erase(b.window.begin());
    }
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (blocks_[i]->consecutive < options_.confirm_batches) continue;
      blocks_[i]->consecutive = 0;
      absl::Status grown = Grow(static_cast<int>(i), /*propose=*/true);
      if (grown.ok()) {
        stats.grown_block = blocks_[i]->index;
        if (options_.task_at_growth) FEDCL_RETURN_IF_ERROR(BeginTask({}));
      } else if (absl::IsResourceExhausted(grown)) {
        stats.refused = grown;  // served by the existing mixture; nothing added or evicted
        continue;
      } else {
        return grown;
      }
      break;  // at most one growth per detection
    }
  }
  std::vector<nn::ParameterSet*> sets = {&model_->head().parameters()};
  for (auto& b : blocks_)
    if (b->growing) sets.push_back(&b->mixture.expert(b->growing_index));
  stats.loss = StepOn(images, labels, sets);
  if (growing_ >= 0) {
    for (auto& b : blocks_) {
      if (!b->growing) continue;
      const nn::Matrix& z = b->mixture.router_input();
      for (int64_t r = 0; r < z.rows() && static_cast<int>(b->buffer.size()) < kMaxBufferedRows;
           ++r)
        b->buffer.push_back(z.row(r));
    }
    if (--growth_steps_left_ == 0) FEDCL_RETURN_IF_ERROR(FinishGrowth());
  }
  return stats;
}

absl::Status Learner::Grow(int block_index, bool propose) {
  Block& b = *blocks_[block_index];
  const int dim = b.mixture.dim();
  const int64_t descriptor_bytes =
      sizeof(float) *
      (2 * int64_t{dim} * options_.descriptor_bottleneck + options_.descriptor_bottleneck + dim);
  FEDCL_RETURN_IF_ERROR(budget_.Check(b.index, b.mixture.experts(),
                                      b.mixture.expert_bytes() + descriptor_bytes, ModuleBytes()));
  FEDCL_ASSIGN_OR_RETURN(
      RepresentationDescriptor rd,
      RepresentationDescriptor::Create(dim, options_.descriptor_bottleneck, rng_));
  for (int e = 0; e < b.mixture.experts(); ++e) b.mixture.expert(e).SetAllTrainable(false);
  const std::string name = absl::StrCat("block", b.index, "/e", b.mixture.experts());
  FEDCL_RETURN_IF_ERROR(
      b.mixture.AddExpert(NewExpert(name, dim, options_.adapter_bottleneck, rng_)).status());
  b.AddDescriptor(std::move(rd), LossRecords(), b.mixture.experts() - 1);
  if (propose) {
    ModuleProposal proposal;
    proposal.block = b.index;
    proposal.index = b.mixture.experts() - 1;
    proposal.expert = b.mixture.expert(proposal.index);
    int64_t n = 0;
    for (const nn::Matrix& z : b.window) n += z.rows();
    nn::Matrix all(n, dim);
    n = 0;
    for (const nn::Matrix& z : b.window) {
      all.middleRows(n, z.rows()) = z;
      n += z.rows();
    }
    const auto [mean, var] = DiagonalGaussian(all);
    proposal.mean.assign(mean.data(), mean.data() + dim);
    proposal.variance.resize(dim);
    // A floor keeps the divergence finite for a dimension that did not vary over the window.
    for (int d = 0; d < dim; ++d) proposal.variance[d] = std::max(var[d], 1e-6f);
    proposals_.push_back(std::move(proposal));
  }
  b.window.clear();
  b.growing = true;
  b.growing_index = b.mixture.experts() - 1;
  b.buffer.clear();
  growing_ = block_index;
  growth_steps_left_ = options_.new_module_steps;
  return absl::OkStatus();
}

absl::Status Learner::FinishGrowth() {
  for (auto& bp : blocks_) {
    Block& b = *bp;
    if (!b.growing) continue;
    const int n = static_cast<int>(b.buffer.size());
    const int dim = b.mixture.dim();
    nn::Matrix z(n, dim);
    for (int r = 0; r < n; ++r) z.row(r) = b.buffer[r];
    // The descriptor's phase (§4.4 step 19): its own epochs over what the adapter trained on;
    // the loss records fill during training (FIFO, so they end with the last epoch's losses).
    // Pooled descriptors may have joined the block since the growth began.
    const int k = b.DescriptorOf(b.growing_index);
    FEDCL_CHECK(k >= 0) << "a growing adapter without a descriptor";
    RepresentationDescriptor& rd = b.descriptors[k];
    // Plain SGD on a linear autoencoder is stable only below a step size set by the inputs'
    // scale, which a grown adapter upstream can raise by an order of magnitude: a training that
    // diverges starts again from the same initial descriptor with a quarter of the step.
    const RepresentationDescriptor initial = rd;
    float learning_rate = options_.descriptor_learning_rate;
    bool finite = false;
    for (int attempt = 0; attempt < 8 && !finite; ++attempt, learning_rate /= 4) {
      rd = initial;
      LossRecords records;
      std::vector<int> order(n);
      std::iota(order.begin(), order.end(), 0);
      for (int epoch = 0; epoch < options_.descriptor_epochs; ++epoch) {
        for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng_.UniformInt(i + 1)]);
        for (int start = 0; start < n; start += 32) {
          const int rows = std::min(32, n - start);
          nn::Matrix batch(rows, dim);
          for (int r = 0; r < rows; ++r) batch.row(r) = z.row(order[start + r]);
          records.Add(rd.Losses(batch));
          rd.TrainStep(batch, learning_rate, options_.weight_decay);
        }
      }
      finite = rd.encoder().allFinite() && rd.decoder().allFinite() &&
               rd.encoder_bias().allFinite() && rd.decoder_bias().allFinite() &&
               std::isfinite(records.mean()) && std::isfinite(records.stddev());
      records.Freeze();
      b.records[k] = std::move(records);
    }
    if (!finite) {
      // Still diverging at 1/16384 of the step: the adapter serves on without a descriptor
      // (detection ignores it, and the pool gets none), rather than with a poisoned one.
      b.descriptors.erase(b.descriptors.begin() + static_cast<std::ptrdiff_t>(k));
      b.records.erase(b.records.begin() + static_cast<std::ptrdiff_t>(k));
      b.descriptor_expert.erase(b.descriptor_expert.begin() + static_cast<std::ptrdiff_t>(k));
    }
    // The Gaussian of what this adapter trained on: router replay's anchor for it.
    b.anchor_mean.resize(b.mixture.experts());
    b.anchor_var.resize(b.mixture.experts());
    std::tie(b.anchor_mean[b.growing_index], b.anchor_var[b.growing_index]) = DiagonalGaussian(z);
    b.mixture.expert(b.growing_index).SetAllTrainable(false);
    b.growing = false;
    b.buffer.clear();
    b.buffer.shrink_to_fit();
  }
  growing_ = -1;
  return absl::OkStatus();
}

}  // namespace fedcl::cl
