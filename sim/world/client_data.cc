#include "sim/world/client_data.h"

#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

constexpr uint64_t kPartitionStream = 0x53494d5041525449;
constexpr uint64_t kLabelMixStream = 0x53494d4d49585858;
constexpr uint64_t kSampleStream = 0x53494d53414d504c;

}  // namespace

absl::StatusOr<ClientData> ClientData::Create(const Scenario& scenario, const data::Dataset& train,
                                              uint64_t seed) {
  ClientData d;
  d.kind_ = scenario.partition;
  d.num_clients_ = scenario.num_clients();
  d.num_classes_ = train.num_classes;
  d.seed_ = seed;
  d.alpha_ = scenario.config.data().alpha();
  d.samples_per_client_ = scenario.config.data().samples_per_client();
  d.labels_ = &train.labels;
  if (train.size() == 0) return absl::InvalidArgumentError("the training set is empty");
  base::Rng rng = base::Rng::ForStream(seed, {kPartitionStream});
  switch (d.kind_) {
    case PartitionKind::kDirichlet: {
      FEDCL_ASSIGN_OR_RETURN(d.partition_, data::PartitionDirichlet(train.labels, d.num_classes_,
                                                                    d.num_clients_, d.alpha_, rng));
      break;
    }
    case PartitionKind::kIid: {
      FEDCL_ASSIGN_OR_RETURN(d.partition_, data::PartitionIid(train.size(), d.num_clients_, rng));
      break;
    }
    case PartitionKind::kOnDemand:
      d.label_pools_.resize(d.num_classes_);
      for (int i = 0; i < train.size(); ++i) d.label_pools_[train.labels[i]].push_back(i);
      break;
  }
  return d;
}

absl::Span<const int> ClientData::Indices(uint32_t client, std::vector<int>& scratch) const {
  if (kind_ != PartitionKind::kOnDemand) return partition_[client];
  std::vector<float> mix(num_classes_);
  LabelMix(client, absl::MakeSpan(mix));
  base::Rng rng = base::Rng::ForStream(seed_, {kSampleStream, client});
  scratch.resize(samples_per_client_);
  for (int& index : scratch) {
    // Inverse-CDF draw of a label, then a uniform sample of that label (skipping empty labels).
    double u = rng.Uniform();
    int label = num_classes_ - 1;
    for (int c = 0; c < num_classes_; ++c) {
      if (u < mix[c]) {
        label = c;
        break;
      }
      u -= mix[c];
    }
    while (label_pools_[label].empty()) label = (label + 1) % num_classes_;
    const std::vector<int>& pool = label_pools_[label];
    index = pool[rng.UniformInt(pool.size())];
  }
  return scratch;
}

void ClientData::LabelMix(uint32_t client, absl::Span<float> mix) const {
  if (kind_ == PartitionKind::kOnDemand) {
    base::Rng rng = base::Rng::ForStream(seed_, {kLabelMixStream, client});
    std::vector<double> q = rng.Dirichlet(alpha_, num_classes_);
    for (int c = 0; c < num_classes_; ++c) mix[c] = static_cast<float>(q[c]);
    return;
  }
  std::fill(mix.begin(), mix.end(), 0.0f);
  const std::vector<int>& indices = partition_[client];
  for (int i : indices) mix[(*labels_)[i]] += 1.0f;
  if (!indices.empty()) {
    for (float& m : mix) m /= static_cast<float>(indices.size());
  }
}

std::vector<float> ClientData::Probabilities(const Scenario& scenario, uint64_t seed) const {
  const v1::ParticipationConfig& p = scenario.config.participation();
  if (p.probabilities() == "uniform") {
    return std::vector<float>(num_clients_, static_cast<float>(p.p_mean()));
  }
  if (p.probabilities() == "list") {
    return std::vector<float>(p.probability().begin(), p.probability().end());
  }
  // Label-correlated, computed client by client so no N × C matrix is ever held.
  std::vector<float> probabilities(num_clients_);
  std::vector<float> mix(num_classes_);
  const std::vector<double> m = ParticipationPreference(num_classes_, p.alpha(), seed);
  for (int n = 0; n < num_clients_; ++n) {
    LabelMix(static_cast<uint32_t>(n), absl::MakeSpan(mix));
    probabilities[n] = LabelCorrelatedProbability(mix, m, p.p_mean(), p.p_min());
  }
  return probabilities;
}

int64_t ClientData::bytes() const {
  int64_t total = 0;
  for (const auto& indices : partition_) total += static_cast<int64_t>(indices.capacity()) * 4 + 24;
  return total;
}

}  // namespace fedcl::sim
