// FedIns inside the Learner (algorithms.md §3): a pool of SSF sets and heads with keys, selected
// per instance.
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/instance_pool.h"
#include "core/cl/learner.h"
#include "core/nn/init.h"
#include "core/nn/loss.h"

namespace fedcl::cl {

absl::Status Learner::InitFedIns() {
  // Every head starts as the pretrained one (the backbone's own classifier).
  FEDCL_ASSIGN_OR_RETURN(InstancePoolModules pool,
                         NewInstancePoolModules(model_->backbone(), model_->head().parameters(),
                                                options_.fedins_pool_size, rng_));
  ssf_pool_ = std::move(pool.ssf);
  head_pool_ = std::move(pool.heads);
  keys_ = std::move(pool.keys);
  ssf_ = std::move(pool.working);
  FEDCL_RETURN_IF_ERROR(ssf_->Attach(*model_));
  fedins_sgd_ = nn::Sgd({.learning_rate = options_.learning_rate});  // no momentum, as §3.4
  return absl::OkStatus();
}

nn::Matrix Learner::FedInsQueries(nn::ConstMatrixRef images) {
  // The query model is the same frozen backbone with SSF off.
  ssf_->Detach();
  model_->Forward(images, false);
  nn::Matrix queries = model_->features();
  FEDCL_CHECK_OK(ssf_->Attach(*model_));
  return queries;
}

void Learner::LoadMeanOfPool(const std::vector<int>& rows) {
  const float k = static_cast<float>(rows.size());
  nn::ParameterSet& ssf = ssf_->parameters();
  nn::ParameterSet& head = model_->head().parameters();
  ssf.flat_values().setZero();
  head.flat_values().setZero();
  for (int j : rows) {
    ssf.flat_values() += ssf_pool_[j].flat_values() / k;
    head.flat_values() += head_pool_[j].flat_values() / k;
  }
}

absl::StatusOr<float> Learner::LearnFedIns(nn::ConstMatrixRef images,
                                           absl::Span<const int32_t> labels) {
  const int64_t n = images.rows();
  const double lambda = options_.fedins_matching_weight;
  const nn::Matrix queries = FedInsQueries(images);
  const nn::Matrix keys =
      Eigen::Map<const nn::Matrix>(keys_.values(0), keys_.info(0).shape[0], keys_.info(0).shape[1]);
  FEDCL_ASSIGN_OR_RETURN(InstanceSelection selection,
                         SelectTopK(queries, keys, options_.fedins_top_k));
  for (auto& s : ssf_pool_) s.ZeroGrads();
  for (auto& s : head_pool_) s.ZeroGrads();
  keys_.ZeroGrads();
  nn::ParameterSet& ssf = ssf_->parameters();
  nn::ParameterSet& head = model_->head().parameters();
  double loss = 0.0;
  for (const std::vector<int>& group : GroupBySelection(selection)) {
    const std::vector<int>& rows = selection.indices[group[0]];
    LoadMeanOfPool(rows);
    nn::Matrix x(group.size(), images.cols());
    std::vector<int32_t> y(group.size());
    for (size_t i = 0; i < group.size(); ++i) {
      x.row(i) = images.row(group[i]);
      y[i] = labels[group[i]];
    }
    ssf.ZeroGrads();
    head.ZeroGrads();
    const nn::Matrix logits = MaskedLogits(model_->Forward(x, /*training=*/true));
    nn::Matrix dlogits;
    const double share = static_cast<double>(group.size()) / static_cast<double>(n);
    loss += (1.0 - lambda) * share * nn::SoftmaxCrossEntropy(logits, y, &dlogits);
    dlogits *= static_cast<float>((1.0 - lambda) * share);
    model_->Backward(dlogits);
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
  fedins_sgd_.Step(sets);
  ++task_steps_;
  return static_cast<float>(loss);
}

absl::StatusOr<nn::Matrix> Learner::FedInsLogits(nn::ConstMatrixRef images, Inspection* hooks,
                                                 int64_t start) {
  const nn::Matrix queries = FedInsQueries(images);
  if (hooks != nullptr) CopyHooks(hooks, start, images.rows());
  const nn::Matrix keys =
      Eigen::Map<const nn::Matrix>(keys_.values(0), keys_.info(0).shape[0], keys_.info(0).shape[1]);
  FEDCL_ASSIGN_OR_RETURN(InstanceSelection selection,
                         SelectTopK(queries, keys, options_.fedins_top_k));
  nn::Matrix logits(images.rows(), model_->config().num_classes);
  for (const std::vector<int>& group : GroupBySelection(selection)) {
    LoadMeanOfPool(selection.indices[group[0]]);
    nn::Matrix x(group.size(), images.cols());
    for (size_t i = 0; i < group.size(); ++i) x.row(i) = images.row(group[i]);
    const nn::Matrix& out = model_->Forward(x, false);
    for (size_t i = 0; i < group.size(); ++i) logits.row(group[i]) = out.row(i);
  }
  return logits;
}

}  // namespace fedcl::cl
