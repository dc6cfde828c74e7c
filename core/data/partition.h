// Splitting a labelled dataset among federated clients.
//
// Each partitioner returns, for client n = 0..num_clients-1, the dataset indices it holds; every
// index is assigned to exactly one client. All randomness comes from the caller's Rng, so a seed
// reproduces the partition:
//
//   base::Rng rng = base::Rng::ForStream(seed, {kPartitionStream});
//   FEDCL_ASSIGN_OR_RETURN(data::Partition clients,
//                          data::PartitionDirichlet(train.labels, 10, 250, 0.1, rng));
//   FEDCL_ASSIGN_OR_RETURN(data::Dataset client0, data::Subset(train, clients[0]));
//
// - PartitionIid: uniform at random, sizes as equal as possible.
// - PartitionDirichlet: label skew as in FedAU (algorithms.md §1.6), the usual non-IID benchmark.
// - PartitionShards: McMahan et al.'s pathological non-IID split (few labels per client).
//
// Errors are InvalidArgument naming the bad value. Thread-safe apart from the Rng, which the
// caller must not share across threads.
#ifndef FEDCL_CORE_DATA_PARTITION_H_
#define FEDCL_CORE_DATA_PARTITION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/random.h"

namespace fedcl::data {

// Indices per client: partition[n] holds client n's dataset indices.
using Partition = std::vector<std::vector<int>>;

// Shuffles [0, num_samples) and deals it into num_clients parts whose sizes differ by at most one
// (the first num_samples % num_clients clients get the extra sample). Each client's indices are
// sorted. Clients are empty when num_samples < num_clients. Needs num_clients > 0 and
// num_samples >= 0.
absl::StatusOr<Partition> PartitionIid(int num_samples, int num_clients, base::Rng& rng);

// Label-skewed partition, exactly FedAU's util.partition (algorithms.md §1.6):
//   1. Q[n] ~ Dirichlet(alpha · 1_C) for clients n = 0..N-1 in order, one rng.Dirichlet call each.
//   2. For each label i, the indices of label i in dataset order are cut into contiguous chunks:
//      client n gets [end(n-1), end(n)) with end(n) = round(|idx_i| · Σ_{m<=n} Q[m,i] / Σ_m Q[m,i])
//      and end(-1) = 0. round() is round-half-to-even, as numpy's np.round.
// Client n's indices are its chunk of label 0, then its chunk of label 1, and so on. With small
// alpha most clients hold few labels and some hold nothing. Needs every label in
// [0, num_classes), num_classes > 0, num_clients > 0 and a finite alpha > 0.
absl::StatusOr<Partition> PartitionDirichlet(absl::Span<const int32_t> labels, int num_classes,
                                             int num_clients, double alpha, base::Rng& rng);

// Step 2 of PartitionDirichlet with the proportions given: q[n][i] is client n's weight for label
// i (q has one row per client, num_classes non-negative finite entries each; rows need not sum to
// one). A label whose column of q is all zero is split as if its column were uniform, so no client
// count is divided by zero. Exposed so the chunking can be tested against a hand-computed q.
absl::StatusOr<Partition> PartitionByLabelProportions(absl::Span<const int32_t> labels,
                                                      int num_classes,
                                                      const std::vector<std::vector<double>>& q);

// Sorts the indices by label (stably, so dataset order within a label), cuts them into
// num_clients · shards_per_client contiguous shards of equal size (the first
// num_samples % num_shards shards one larger, so nothing is dropped) and deals the shards out in a
// random order, shards_per_client per client. Each client's shards are concatenated in index
// order. Needs num_clients > 0, shards_per_client > 0 and at least one sample per shard.
absl::StatusOr<Partition> PartitionShards(absl::Span<const int32_t> labels, int num_clients,
                                          int shards_per_client, base::Rng& rng);

// d_n of §1.6: the fraction of each label among labels[indices], num_classes entries summing to 1;
// all zeros when `indices` is empty. Needs indices in range and their labels in [0, num_classes).
absl::StatusOr<std::vector<double>> EmpiricalLabelDistribution(absl::Span<const int32_t> labels,
                                                               absl::Span<const int> indices,
                                                               int num_classes);

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_PARTITION_H_
