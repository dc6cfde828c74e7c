// SEMA's learning: detection, growth, the growing adapter's training and its descriptor (the
// contract is in sema_method.h).
#include "core/cl/methods/sema/sema_method.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/method_util.h"
#include "core/nn/vit_backbone.h"

namespace fedcl::cl {
namespace {

constexpr int kMaxBufferedRows = 4096;

// Per-dimension mean and unbiased variance of the rows of z.
std::pair<Eigen::RowVectorXf, Eigen::RowVectorXf> DiagonalGaussian(const nn::Matrix& z) {
  const Eigen::RowVectorXf mean = z.colwise().mean();
  const Eigen::RowVectorXf var = (z.rowwise() - mean).array().square().colwise().sum() /
                                 static_cast<float>(std::max<int64_t>(1, z.rows() - 1));
  return {mean, var};
}

}  // namespace

absl::StatusOr<SemaOptions> SemaOptions::Parse(const std::string& text, bool router_replay) {
  SemaOptions o;
  o.router_replay = router_replay;
  FEDCL_ASSIGN_OR_RETURN(
      base::OptionText t,
      base::OptionText::Parse(text, router_replay ? "method sema_replay" : "method sema"));
  FEDCL_RETURN_IF_ERROR(t.Read("adapter_bottleneck", &o.adapter_bottleneck));
  FEDCL_RETURN_IF_ERROR(t.ReadList("expandable_blocks", &o.expandable_blocks));
  FEDCL_RETURN_IF_ERROR(t.Read("descriptor_bottleneck", &o.descriptor_bottleneck));
  FEDCL_RETURN_IF_ERROR(t.Read("expansion_tau", &o.expansion_tau));
  FEDCL_RETURN_IF_ERROR(t.Read("confirm_batches", &o.confirm_batches));
  FEDCL_RETURN_IF_ERROR(t.Read("new_module_steps", &o.new_module_steps));
  FEDCL_RETURN_IF_ERROR(t.Read("router_replay", &o.router_replay));
  FEDCL_RETURN_IF_ERROR(t.Read("router_replay_samples", &o.router_replay_samples));
  FEDCL_RETURN_IF_ERROR(t.Read("descriptor_epochs", &o.descriptor_epochs));
  FEDCL_RETURN_IF_ERROR(t.Read("descriptor_learning_rate", &o.descriptor_learning_rate));
  FEDCL_RETURN_IF_ERROR(t.Read("max_adapters_per_block", &o.max_adapters_per_block));
  FEDCL_RETURN_IF_ERROR(t.Read("trigger", &o.trigger));
  FEDCL_RETURN_IF_ERROR(t.Read("trigger_score", &o.trigger_score));
  FEDCL_RETURN_IF_ERROR(t.Read("calibration_samples", &o.calibration_samples));
  FEDCL_RETURN_IF_ERROR(t.Read("false_alarms_per_10k", &o.false_alarms_per_10k));
  FEDCL_RETURN_IF_ERROR(t.Read("cusum_allowance", &o.cusum_allowance));
  FEDCL_RETURN_IF_ERROR(t.CheckAllRead());
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("method sema: ", what));
  };
  if (o.adapter_bottleneck < 1) return bad("adapter_bottleneck must be >= 1");
  if (o.descriptor_bottleneck < 1) return bad("descriptor_bottleneck must be >= 1");
  if (!(o.expansion_tau > 0)) return bad("expansion_tau must be positive");
  if (o.confirm_batches < 1) return bad("confirm_batches must be >= 1");
  if (o.new_module_steps < 1) return bad("new_module_steps must be >= 1");
  if (o.router_replay_samples < 0) return bad("router_replay_samples must be >= 0");
  if (o.descriptor_epochs < 1) return bad("descriptor_epochs must be >= 1");
  if (!(o.descriptor_learning_rate > 0)) return bad("descriptor_learning_rate must be positive");
  if (o.max_adapters_per_block < 1) return bad("max_adapters_per_block must be >= 1");
  if (o.expandable_blocks.empty()) return bad("expandable_blocks is empty");
  if (o.trigger != "descriptor" && o.trigger != "cusum")
    return bad(absl::StrCat("trigger '", o.trigger, "' is neither descriptor nor cusum"));
  if (o.trigger_score != "energy" && o.trigger_score != "max_softmax" &&
      o.trigger_score != "descriptor" && o.trigger_score != "class_features") {
    return bad(absl::StrCat("trigger_score '", o.trigger_score,
                            "' is none of energy, max_softmax, descriptor and class_features"));
  }
  if (o.calibration_samples < 16) return bad("calibration_samples must be >= 16");
  if (!(o.false_alarms_per_10k > 0 && o.false_alarms_per_10k <= 1000))
    return bad("false_alarms_per_10k must be in (0, 1000]");
  if (!(o.cusum_allowance > 0 && std::isfinite(o.cusum_allowance)))
    return bad("cusum_allowance must be positive");
  return o;
}

SemaMethod::~SemaMethod() {
  if (core_ == nullptr || core_->model().config().backbone != nn::BackboneKind::kVit) return;
  auto& vit = static_cast<nn::VitBackbone&>(core_->model().backbone());
  for (auto& b : blocks_) vit.block(b->index).adapter.SetExtension(nullptr);
}

absl::Status SemaMethod::Init(LearnerCore& core) {
  FEDCL_RETURN_IF_ERROR(CheckVitBlocks(core.model(), options_.expandable_blocks, "sema"));
  core_ = &core;
  budget_ = GrowthBudget({.max_adapters_per_block = options_.max_adapters_per_block,
                          .memory_budget_bytes = core.options().module_memory_budget_bytes});
  auto& backbone = static_cast<nn::VitBackbone&>(core.model().backbone());
  const int dim = backbone.feature_dim();
  if (options_.descriptor_bottleneck >= dim) {
    return absl::InvalidArgumentError(absl::StrCat("method sema: descriptor_bottleneck ",
                                                   options_.descriptor_bottleneck,
                                                   " does not compress the block width ", dim));
  }
  for (int b : options_.expandable_blocks) {
    blocks_.push_back(std::make_unique<Block>(b, dim, options_.adapter_bottleneck));
    backbone.block(b).adapter.SetExtension(&blocks_.back()->mixture);
  }
  // Task 0: every block's first adapter is new (§4.4).
  for (size_t i = 0; i < blocks_.size(); ++i)
    FEDCL_RETURN_IF_ERROR(Grow(static_cast<int>(i), /*propose=*/false));
  return absl::OkStatus();
}

std::vector<nn::ParameterSet*> SemaMethod::SharedModules(LearnerCore& core) {
  std::vector<nn::ParameterSet*> out = {&core.model().head().parameters()};
  for (auto& b : blocks_)
    for (int e = 0; e < b->mixture.experts(); ++e) out.push_back(&b->mixture.expert(e));
  return out;
}

std::vector<peft::ModuleSpec> SemaMethod::SharedModuleSpecs(LearnerCore& core) {
  // The first adapter of each block is the pool's base expert; grown ones are proposed.
  std::vector<peft::ModuleSpec> specs = {{.name = "head", .role = peft::ModuleRole::kHead}};
  for (auto& b : blocks_) {
    for (int e = 0; e < b->mixture.experts(); ++e) {
      specs.push_back({.name = b->mixture.expert(e).name(),
                       .role = e == 0 ? peft::ModuleRole::kBaseExpert : peft::ModuleRole::kExpert,
                       .block = b->index});
    }
  }
  return specs;
}

int64_t SemaMethod::ModuleValues() const {
  int64_t values = 0;
  for (const auto& b : blocks_) {
    for (int e = 0; e < b->mixture.experts(); ++e) values += b->mixture.expert(e).num_values();
    for (const auto& rd : b->descriptors) values += rd.num_parameters();
  }
  return values;
}

int64_t SemaMethod::UsedBytes() const {
  return (core_->model().head().parameters().num_values() + ModuleValues()) *
         static_cast<int64_t>(sizeof(float));
}

absl::StatusOr<LearnStats> SemaMethod::Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                             absl::Span<const int32_t> labels) {
  LearnStats stats;
  if (growing_ < 0) FEDCL_RETURN_IF_ERROR(Detect(core, images, labels, stats));
  std::vector<nn::ParameterSet*> sets = {&core.model().head().parameters()};
  for (auto& b : blocks_)
    if (b->growing) sets.push_back(&b->mixture.expert(b->growing_index));
  stats.loss = core.StepOn(images, labels, sets, [&] {
    core.FreezeLearnedHeadRows();
    if (options_.router_replay && growing_ >= 0) AddRouterReplayGradients();
  });
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

absl::Status SemaMethod::Detect(LearnerCore& core, nn::ConstMatrixRef images,
                                absl::Span<const int32_t> labels, LearnStats& stats) {
  // Detection on this batch: an eval forward, then every adapter's batch-mean z-score.
  stats.detected = true;
  const nn::Matrix& logits = core.model().Forward(images, false);
  std::vector<double> unusual(blocks_.size());
  // trigger_score "descriptor" only: per sample, the largest over blocks of its z-score under
  // the block's most familiar adapter.
  const bool score_descriptors =
      options_.trigger == "cusum" && options_.trigger_score == "descriptor";
  std::vector<float> descriptor_scores(score_descriptors ? images.rows() : 0,
                                       -std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = *blocks_[i];
    const nn::Matrix& z = b.mixture.router_input();
    std::vector<std::vector<double>> z_scores(b.descriptors.size());
    for (size_t a = 0; a < b.descriptors.size(); ++a) {
      for (float loss : b.descriptors[a].Losses(z))
        z_scores[a].push_back(b.records[a].ZScore(loss));
    }
    for (int64_t n = 0; score_descriptors && n < images.rows() && !z_scores.empty(); ++n) {
      double familiar = std::numeric_limits<double>::infinity();
      for (const std::vector<double>& adapter : z_scores) familiar = std::min(familiar, adapter[n]);
      descriptor_scores[n] = std::max(descriptor_scores[n], static_cast<float>(familiar));
    }
    unusual[i] = SmallestMeanZScore(z_scores);
    b.consecutive = unusual[i] > options_.expansion_tau ? b.consecutive + 1 : 0;
    b.window.push_back(z);
    if (static_cast<int>(b.window.size()) > options_.confirm_batches)
      b.window.erase(b.window.begin());
  }
  if (options_.trigger == "cusum") {
    if (score_descriptors) {
      // No descriptor yet (a block of pooled adapters only): nothing to score.
      for (float& s : descriptor_scores)
        if (!std::isfinite(s)) s = 0.0f;
      return DetectByCusum(core, descriptor_scores, options_.calibration_samples, unusual, stats);
    }
    if (options_.trigger_score == "class_features")
      return DetectOnClassFeatures(core, labels, unusual, stats);
    return DetectByCusum(core, TriggerScores(logits), options_.calibration_samples, unusual, stats);
  }
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (blocks_[i]->consecutive < options_.confirm_batches) continue;
    blocks_[i]->consecutive = 0;
    FEDCL_RETURN_IF_ERROR(GrowOnDetection(core, static_cast<int>(i), stats));
    if (stats.grown_block >= 0) break;  // at most one growth per detection
  }
  return absl::OkStatus();
}

absl::Status SemaMethod::GrowOnDetection(LearnerCore& core, int i, LearnStats& stats) {
  absl::Status grown = Grow(i, /*propose=*/true);
  if (absl::IsResourceExhausted(grown)) {
    stats.refused = grown;  // served by the existing mixture; nothing added or evicted
    return absl::OkStatus();
  }
  FEDCL_RETURN_IF_ERROR(grown);
  stats.grown_block = blocks_[i]->index;
  if (core.options().task_at_shift) FEDCL_RETURN_IF_ERROR(core.StartTask({}));
  return absl::OkStatus();
}

std::vector<float> SemaMethod::TriggerScores(const nn::Matrix& logits) const {
  std::vector<float> scores(logits.rows());
  for (int64_t r = 0; r < logits.rows(); ++r) {
    const float top = logits.row(r).maxCoeff();
    const float log_sum = top + std::log((logits.row(r).array() - top).exp().sum());
    scores[r] = options_.trigger_score == "energy" ? -log_sum : -std::exp(top - log_sum);
  }
  return scores;
}

void SemaMethod::FitClassReference() {
  const int64_t n = reference_features_.rows(), dim = reference_features_.cols();
  ClassReference ref;
  int classes = 0;
  for (int32_t y : reference_labels_) classes = std::max(classes, y + 1);
  ref.mean = nn::Matrix::Zero(classes, dim);
  std::vector<int64_t> count(classes, 0);
  for (int64_t r = 0; r < n; ++r) {
    ref.mean.row(reference_labels_[r]) += reference_features_.row(r);
    ++count[reference_labels_[r]];
  }
  ref.seen.assign(classes, false);
  for (int c = 0; c < classes; ++c) {
    if (count[c] == 0) continue;
    ref.mean.row(c) /= static_cast<float>(count[c]);
    ref.seen[c] = true;
  }
  // The variance within classes, pooled, per feature.
  Eigen::RowVectorXf var = Eigen::RowVectorXf::Zero(dim);
  for (int64_t r = 0; r < n; ++r)
    var +=
        (reference_features_.row(r) - ref.mean.row(reference_labels_[r])).array().square().matrix();
  const int used = static_cast<int>(std::count(ref.seen.begin(), ref.seen.end(), true));
  var /= static_cast<float>(std::max<int64_t>(1, n - used));
  // A floor keeps a feature that did not vary from dominating every later distance.
  const float floor = 1e-6f * std::max(1e-12f, var.mean());
  ref.inv_std = var.cwiseMax(floor).cwiseSqrt().cwiseInverse();
  class_reference_ = std::move(ref);
  reference_features_.resize(0, 0);
  reference_labels_.clear();
}

float SemaMethod::ClassDistance(const Eigen::Ref<const Eigen::RowVectorXf>& f,
                                int32_t label) const {
  const ClassReference& ref = *class_reference_;
  auto distance = [&](int c) {
    return (f - ref.mean.row(c)).cwiseProduct(ref.inv_std).squaredNorm() /
           static_cast<float>(f.size());
  };
  if (label >= 0 && label < static_cast<int32_t>(ref.seen.size()) && ref.seen[label])
    return distance(label);
  // A class the reference never saw: its distance to the nearest class it did.
  float nearest = std::numeric_limits<float>::infinity();
  for (size_t c = 0; c < ref.seen.size(); ++c)
    if (ref.seen[c]) nearest = std::min(nearest, distance(static_cast<int>(c)));
  return nearest;
}

absl::Status SemaMethod::DetectOnClassFeatures(LearnerCore& core, absl::Span<const int32_t> labels,
                                               const std::vector<double>& unusual,
                                               LearnStats& stats) {
  const nn::Matrix& features = core.model().features();
  const int half = options_.calibration_samples / 2;
  if (!class_reference_.has_value()) {  // the reference half of the calibration
    const int64_t at = reference_features_.rows();
    reference_features_.conservativeResize(at + features.rows(), features.cols());
    reference_features_.bottomRows(features.rows()) = features;
    reference_labels_.insert(reference_labels_.end(), labels.begin(), labels.end());
    if (reference_features_.rows() >= half) FitClassReference();
    return absl::OkStatus();
  }
  std::vector<float> scores(features.rows());
  for (int64_t r = 0; r < features.rows(); ++r)
    scores[r] = ClassDistance(features.row(r), labels[r]);
  return DetectByCusum(core, scores, options_.calibration_samples - half, unusual, stats);
}

absl::Status SemaMethod::DetectByCusum(LearnerCore& core, const std::vector<float>& scores,
                                       int calibration_samples, const std::vector<double>& unusual,
                                       LearnStats& stats) {
  if (!cusum_.has_value()) {
    calibration_.insert(calibration_.end(), scores.begin(), scores.end());
    if (static_cast<int>(calibration_.size()) < calibration_samples) return absl::OkStatus();
    absl::StatusOr<ood::CusumTest> calibrated = ood::CusumTest::Calibrate(
        calibration_, {.allowance = options_.cusum_allowance,
                       .false_alarms_per_10k = options_.false_alarms_per_10k,
                       .seed = core.rng().NextU64()});
    calibration_.clear();
    // Scores that do not vary (a model that is certain of everything): collect afresh.
    if (calibrated.ok()) cusum_ = *std::move(calibrated);
    return absl::OkStatus();
  }
  bool alarm = false;
  for (float s : scores) {
    if (cusum_->Observe(s)) {
      alarm = true;
      break;
    }
  }
  if (!alarm) return absl::OkStatus();
  // Calibrated again on the stream after the shift, whatever happens below.
  cusum_.reset();
  class_reference_.reset();
  int chosen = static_cast<int>(blocks_.size()) - 1;
  for (int i = chosen - 1; i >= 0; --i)
    if (unusual[i] > unusual[chosen]) chosen = i;
  return GrowOnDetection(core, chosen, stats);
}

void SemaMethod::AddRouterReplayGradients() {
  base::Rng& rng = core_->rng();
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
                 std::sqrt(b.anchor_var[e][d]) * static_cast<float>(rng.Normal());
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

absl::Status SemaMethod::Grow(int block_index, bool propose) {
  Block& b = *blocks_[block_index];
  const int dim = b.mixture.dim();
  const int64_t descriptor_bytes =
      sizeof(float) *
      (2 * int64_t{dim} * options_.descriptor_bottleneck + options_.descriptor_bottleneck + dim);
  FEDCL_RETURN_IF_ERROR(budget_.Check(b.index, b.mixture.experts(),
                                      b.mixture.expert_bytes() + descriptor_bytes, UsedBytes()));
  FEDCL_ASSIGN_OR_RETURN(
      RepresentationDescriptor rd,
      RepresentationDescriptor::Create(dim, options_.descriptor_bottleneck, core_->rng()));
  for (int e = 0; e < b.mixture.experts(); ++e) b.mixture.expert(e).SetAllTrainable(false);
  const std::string name = absl::StrCat("block", b.index, "/e", b.mixture.experts());
  FEDCL_RETURN_IF_ERROR(
      b.mixture.AddExpert(NewExpert(name, dim, options_.adapter_bottleneck, core_->rng()))
          .status());
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

absl::Status SemaMethod::FinishGrowth() {
  base::Rng& rng = core_->rng();
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
        for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.UniformInt(i + 1)]);
        for (int start = 0; start < n; start += 32) {
          const int rows = std::min(32, n - start);
          nn::Matrix batch(rows, dim);
          for (int r = 0; r < rows; ++r) batch.row(r) = z.row(order[start + r]);
          records.Add(rd.Losses(batch));
          rd.TrainStep(batch, learning_rate, core_->options().weight_decay);
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

void RegisterSemaMethods(MethodRegistry& registry) {
  auto factory = [](bool replay) {
    return [replay](const MethodConfig& config) -> absl::StatusOr<std::unique_ptr<Method>> {
      FEDCL_ASSIGN_OR_RETURN(SemaOptions options, SemaOptions::Parse(config.options, replay));
      return std::make_unique<SemaMethod>(options);
    };
  };
  registry.Register("sema", "SEMA: mixtures of adapters that grow when the stream shifts",
                    factory(false));
  registry.Register("sema_replay", "SEMA with router replay of the older adapters' Gaussians",
                    factory(true));
}

}  // namespace fedcl::cl
