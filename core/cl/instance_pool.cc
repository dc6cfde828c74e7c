#include "core/cl/instance_pool.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/init.h"

namespace fedcl::cl {

absl::StatusOr<InstancePoolModules> NewInstancePoolModules(const nn::Backbone& backbone,
                                                           const nn::ParameterSet& head,
                                                           int pool_size, base::Rng& rng) {
  if (pool_size < 1)
    return absl::InvalidArgumentError(absl::StrCat("a FedIns pool of ", pool_size, " sets"));
  InstancePoolModules out;
  const peft::PetConfig ssf{.kind = peft::PetKind::kSsf};  // every SSF site
  for (int j = 0; j < pool_size; ++j) {
    FEDCL_ASSIGN_OR_RETURN(auto module, peft::PetModule::Create("ssf", ssf, backbone, rng));
    out.ssf.push_back(module->parameters());
    out.ssf.back().set_name(absl::StrCat("fedins/ssf", j));
    out.heads.push_back(head);
    out.heads.back().set_name(absl::StrCat("fedins/head", j));
    out.heads.back().SetAllTrainable(true);
  }
  FEDCL_ASSIGN_OR_RETURN(out.working, peft::PetModule::Create("ssf", ssf, backbone, rng));
  out.keys.set_name("fedins/keys");
  nn::InitTruncatedNormal({&out.keys, out.keys.Add("keys", {pool_size, backbone.feature_dim()},
                                                   /*trainable=*/true)},
                          0.02, rng);
  return out;
}

absl::StatusOr<InstanceSelection> SelectTopK(const nn::Matrix& queries, const nn::Matrix& keys,
                                             int k) {
  if (queries.cols() != keys.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("queries have ", queries.cols(), " dimensions, keys ", keys.cols()));
  }
  if (k < 1 || k > keys.rows()) {
    return absl::InvalidArgumentError(absl::StrCat("top-k ", k, " of a pool of ", keys.rows()));
  }
  nn::Matrix unit_keys = keys;
  for (int64_t j = 0; j < keys.rows(); ++j) {
    const float norm = keys.row(j).norm();
    if (norm > 0) unit_keys.row(j) /= norm;
  }
  InstanceSelection selection;
  selection.indices.resize(queries.rows());
  selection.reduced_similarity.resize(queries.rows());
  std::vector<int> order(keys.rows());
  for (int64_t i = 0; i < queries.rows(); ++i) {
    const float norm = queries.row(i).norm();
    const Eigen::RowVectorXf cosine =
        (unit_keys * queries.row(i).transpose()).transpose() / (norm > 0 ? norm : 1.0f);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
      return cosine[a] > cosine[b] || (cosine[a] == cosine[b] && a < b);
    });
    selection.indices[i].assign(order.begin(), order.begin() + k);
    float sum = 0;
    for (int j : selection.indices[i]) sum += cosine[j];
    selection.reduced_similarity[i] = sum;
  }
  return selection;
}

nn::Matrix MeanOfSelected(const nn::Matrix& pool, const InstanceSelection& selection) {
  nn::Matrix out = nn::Matrix::Zero(static_cast<int64_t>(selection.indices.size()), pool.cols());
  for (size_t i = 0; i < selection.indices.size(); ++i) {
    for (int j : selection.indices[i]) out.row(static_cast<int64_t>(i)) += pool.row(j);
    out.row(static_cast<int64_t>(i)) /= static_cast<float>(selection.indices[i].size());
  }
  return out;
}

std::vector<std::vector<int>> GroupBySelection(const InstanceSelection& selection) {
  std::map<std::vector<int>, size_t> group_of;
  std::vector<std::vector<int>> groups;
  for (size_t i = 0; i < selection.indices.size(); ++i) {
    std::vector<int> key = selection.indices[i];
    std::sort(key.begin(), key.end());
    auto [it, inserted] = group_of.emplace(std::move(key), groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(static_cast<int>(i));
  }
  return groups;
}

double MatchingLoss(const nn::Matrix& queries, const nn::Matrix& keys,
                    const InstanceSelection& selection, double weight, nn::Matrix* key_gradient) {
  const double n = static_cast<double>(selection.indices.size());
  double loss = 0;
  for (size_t i = 0; i < selection.indices.size(); ++i) {
    loss += weight * (1.0 - selection.reduced_similarity[i]) / n;
    if (key_gradient == nullptr) continue;
    const Eigen::RowVectorXf q = queries.row(static_cast<int64_t>(i));
    const float q_norm = q.norm();
    for (int j : selection.indices[i]) {
      // d cos(q, K) / dK = (q / |q| − cos · K / |K|) / |K|; the loss has −λ/n in front.
      const Eigen::RowVectorXf key = keys.row(j);
      const float k_norm = key.norm();
      if (k_norm == 0 || q_norm == 0) continue;
      const float cosine = q.dot(key) / (q_norm * k_norm);
      key_gradient->row(j) -=
          static_cast<float>(weight / n) * (q / q_norm - cosine * key / k_norm) / k_norm;
    }
  }
  return loss;
}

}  // namespace fedcl::cl
