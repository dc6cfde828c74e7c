// fedins: FedIns (algorithms.md §3). A pool of P SSF sets and heads with keys; each instance picks
// its top-k keys by cosine similarity to its query (the frozen backbone's feature, SSF off) and
// runs with the uniform mean of the selected sets. Instances that picked the same sets share one
// forward; one SGD step (no momentum, §3.4) per batch on (1 − λ)·CE + λ·matching loss. The pool
// (keys, SSF sets, heads) is what it shares: the server aggregates each set like any module
// (role instance_pool).
//
// Options: pool_size (8), top_k (2), matching_weight λ (0.1).
#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/instance_pool.h"
#include "core/cl/methods/method_util.h"
#include "core/nn/loss.h"

namespace fedcl::cl {
namespace {

class FedInsMethod final : public Method {
 public:
  static absl::StatusOr<std::unique_ptr<Method>> Create(const MethodConfig& config);
  absl::string_view name() const override { return "fedins"; }
  absl::Status Init(LearnerCore& core) override;
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override {
    std::vector<nn::ParameterSet*> out = {&keys_};
    for (auto& s : ssf_pool_) out.push_back(&s);
    for (auto& s : head_pool_) out.push_back(&s);
    return out;
  }
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override {
    std::vector<peft::ModuleSpec> specs;
    for (nn::ParameterSet* set : SharedModules(core))
      specs.push_back({.name = set->name(), .role = peft::ModuleRole::kInstancePool});
    return specs;
  }
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override;
  absl::StatusOr<nn::Matrix> ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                         Inspection* hooks, int64_t start) override;
  bool single_forward() const override { return false; }
  int64_t ModuleValues() const override {
    int64_t values = keys_.num_values();
    for (const auto& s : ssf_pool_) values += s.num_values();
    for (const auto& s : head_pool_) values += s.num_values();
    return values;
  }

 private:
  nn::Matrix Queries(LearnerCore& core, nn::ConstMatrixRef images);
  // Sets the working SSF and the head to the mean of the pool rows in `rows`.
  void LoadMeanOfPool(LearnerCore& core, const std::vector<int>& rows);
  nn::Matrix Keys() const {
    return Eigen::Map<const nn::Matrix>(keys_.values(0), keys_.info(0).shape[0],
                                        keys_.info(0).shape[1]);
  }

  int pool_size_ = 8;
  int top_k_ = 2;
  double matching_weight_ = 0.1;  // λ
  // The working SSF (attached) and the head hold the mean of the selected pool rows.
  std::unique_ptr<peft::PetModule> ssf_;
  std::vector<nn::ParameterSet> ssf_pool_, head_pool_;
  nn::ParameterSet keys_{"keys"};  // "keys" [P, d]
  nn::Sgd sgd_{{.learning_rate = 0.01f}};
};

absl::StatusOr<std::unique_ptr<Method>> FedInsMethod::Create(const MethodConfig& config) {
  auto m = std::make_unique<FedInsMethod>();
  FEDCL_ASSIGN_OR_RETURN(base::OptionText options,
                         base::OptionText::Parse(config.options, "method fedins"));
  FEDCL_RETURN_IF_ERROR(options.Read("pool_size", &m->pool_size_));
  FEDCL_RETURN_IF_ERROR(options.Read("top_k", &m->top_k_));
  FEDCL_RETURN_IF_ERROR(options.Read("matching_weight", &m->matching_weight_));
  FEDCL_RETURN_IF_ERROR(options.CheckAllRead());
  if (m->pool_size_ < 1 || m->pool_size_ > 256)
    return absl::InvalidArgumentError("method fedins: pool_size must be in [1, 256]");
  if (m->top_k_ < 1 || m->top_k_ > m->pool_size_)
    return absl::InvalidArgumentError("method fedins: needs 1 <= top_k <= pool_size");
  if (!(m->matching_weight_ >= 0 && m->matching_weight_ < 1))
    return absl::InvalidArgumentError("method fedins: matching_weight must be in [0, 1)");
  return m;
}

absl::Status FedInsMethod::Init(LearnerCore& core) {
  // Every head starts as the pretrained one (the backbone's own classifier).
  nn::Model& model = core.model();
  FEDCL_ASSIGN_OR_RETURN(
      InstancePoolModules pool,
      NewInstancePoolModules(model.backbone(), model.head().parameters(), pool_size_, core.rng()));
  ssf_pool_ = std::move(pool.ssf);
  head_pool_ = std::move(pool.heads);
  keys_ = std::move(pool.keys);
  ssf_ = std::move(pool.working);
  FEDCL_RETURN_IF_ERROR(ssf_->Attach(model));
  sgd_ = nn::Sgd({.learning_rate = core.options().learning_rate});  // no momentum, as §3.4
  return absl::OkStatus();
}

nn::Matrix FedInsMethod::Queries(LearnerCore& core, nn::ConstMatrixRef images) {
  // The query model is the same frozen backbone with SSF off.
  ssf_->Detach();
  core.model().Forward(images, false);
  nn::Matrix queries = core.model().features();
  FEDCL_CHECK_OK(ssf_->Attach(core.model()));
  return queries;
}

void FedInsMethod::LoadMeanOfPool(LearnerCore& core, const std::vector<int>& rows) {
  const float k = static_cast<float>(rows.size());
  nn::ParameterSet& ssf = ssf_->parameters();
  nn::ParameterSet& head = core.model().head().parameters();
  ssf.flat_values().setZero();
  head.flat_values().setZero();
  for (int j : rows) {
    ssf.flat_values() += ssf_pool_[j].flat_values() / k;
    head.flat_values() += head_pool_[j].flat_values() / k;
  }
}

absl::StatusOr<LearnStats> FedInsMethod::Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                               absl::Span<const int32_t> labels) {
  nn::Model& model = core.model();
  const int64_t n = images.rows();
  const double lambda = matching_weight_;
  const nn::Matrix queries = Queries(core, images);
  const nn::Matrix keys = Keys();
  FEDCL_ASSIGN_OR_RETURN(InstanceSelection selection, SelectTopK(queries, keys, top_k_));
  for (auto& s : ssf_pool_) s.ZeroGrads();
  for (auto& s : head_pool_) s.ZeroGrads();
  keys_.ZeroGrads();
  nn::ParameterSet& ssf = ssf_->parameters();
  nn::ParameterSet& head = model.head().parameters();
  double loss = 0.0;
  for (const std::vector<int>& group : GroupBySelection(selection)) {
    const std::vector<int>& rows = selection.indices[group[0]];
    LoadMeanOfPool(core, rows);
    nn::Matrix x(group.size(), images.cols());
    std::vector<int32_t> y(group.size());
    for (size_t i = 0; i < group.size(); ++i) {
      x.row(i) = images.row(group[i]);
      y[i] = labels[group[i]];
    }
    ssf.ZeroGrads();
    head.ZeroGrads();
    const nn::Matrix logits = core.MaskedLogits(model.Forward(x, /*training=*/true));
    nn::Matrix dlogits;
    const double share = static_cast<double>(group.size()) / static_cast<double>(n);
    loss += (1.0 - lambda) * share * nn::SoftmaxCrossEntropy(logits, y, &dlogits);
    dlogits *= static_cast<float>((1.0 - lambda) * share);
    model.Backward(dlogits);
    // The working set is the uniform mean of the selected rows: each gets 1/k of its gradient.
    const float k = static_cast<float>(rows.size());
    for (int j : rows) {
      ssf_pool_[j].flat_grads() += ssf.flat_grads() / k;
      head_pool_[j].flat_grads() += head.flat_grads() / k;
    }
  }
  nn::Matrix key_gradient = nn::Matrix::Zero(keys.rows(), keys.cols());
  loss += MatchingLoss(queries, keys, selection, lambda, &key_gradient);
  Eigen::Map<nn::Matrix>(keys_.grads(0), keys.rows(), keys.cols()) = key_gradient;
  std::vector<nn::ParameterSet*> sets = {&keys_};
  for (auto& s : ssf_pool_) sets.push_back(&s);
  for (auto& s : head_pool_) sets.push_back(&s);
  sgd_.Step(sets);
  core.CountStep();
  LearnStats stats;
  stats.loss = static_cast<float>(loss);
  return stats;
}

absl::StatusOr<nn::Matrix> FedInsMethod::ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                                     Inspection* hooks, int64_t start) {
  const nn::Matrix queries = Queries(core, images);
  if (hooks != nullptr) core.CopyHooks(hooks, start, images.rows());
  FEDCL_ASSIGN_OR_RETURN(InstanceSelection selection, SelectTopK(queries, Keys(), top_k_));
  nn::Matrix logits(images.rows(), core.num_classes());
  for (const std::vector<int>& group : GroupBySelection(selection)) {
    LoadMeanOfPool(core, selection.indices[group[0]]);
    nn::Matrix x(group.size(), images.cols());
    for (size_t i = 0; i < group.size(); ++i) x.row(i) = images.row(group[i]);
    const nn::Matrix& out = core.model().Forward(x, false);
    for (size_t i = 0; i < group.size(); ++i) logits.row(group[i]) = out.row(i);
  }
  return logits;
}

}  // namespace

void RegisterFedInsMethod(MethodRegistry& registry) {
  RegisterMethod<FedInsMethod>(registry, "fedins",
                               "FedIns: SSF sets and heads selected per instance by keys");
}

}  // namespace fedcl::cl
