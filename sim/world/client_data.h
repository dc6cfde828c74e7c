// Which training samples each virtual client holds.
//
// "dirichlet" and "iid" materialise the partition (data::PartitionDirichlet, exactly FedAU's, or
// PartitionIid) once per seed: fine up to tens of thousands of clients. "on_demand" stores nothing
// per client: client n's label mix is Dirichlet(alpha) from its own stream, and its
// samples_per_client samples are drawn from the shared training set by that mix, from another
// stream of (seed, n), when it trains. The same client always gets the same samples.
#ifndef FEDCL_SIM_WORLD_CLIENT_DATA_H_
#define FEDCL_SIM_WORLD_CLIENT_DATA_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

class ClientData {
 public:
  static absl::StatusOr<ClientData> Create(const Scenario& scenario, const data::Dataset& train,
                                           uint64_t seed);

  // Client n's sample indices into the training set. For on_demand they are drawn into
  // `scratch` and the span points there.
  absl::Span<const int> Indices(uint32_t client, std::vector<int>& scratch) const;
  // d_n: client n's label distribution (empirical for a partition, the drawn mix for on_demand),
  // num_classes entries written to `mix`.
  void LabelMix(uint32_t client, absl::Span<float> mix) const;
  // p_n for every client, as the scenario's participation section says.
  std::vector<float> Probabilities(const Scenario& scenario, uint64_t seed) const;

  int num_clients() const { return num_clients_; }
  int num_classes() const { return num_classes_; }
  // Bytes held per client (indices for a partition; 0 for on_demand).
  int64_t bytes() const;

 private:
  PartitionKind kind_ = PartitionKind::kDirichlet;
  int num_clients_ = 0;
  int num_classes_ = 0;
  uint64_t seed_ = 0;
  double alpha_ = 0.1;
  int samples_per_client_ = 0;
  data::Partition partition_;                  // dirichlet, iid
  std::vector<std::vector<int>> label_pools_;  // on_demand: training indices of each label
  const std::vector<int32_t>* labels_ = nullptr;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_WORLD_CLIENT_DATA_H_
