#include "core/data/partition.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::data {
namespace {

absl::Status CheckPositive(absl::string_view name, int64_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(name, " must be positive, got ", value));
}

absl::Status CheckLabels(absl::Span<const int32_t> labels, int num_classes) {
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("label ", labels[i], " of sample ", i,
                                                     " is outside [0, ", num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckProportions(const std::vector<std::vector<double>>& q, int num_classes) {
  FEDCL_RETURN_IF_ERROR(CheckPositive("number of clients (rows of q)", q.size()));
  for (size_t n = 0; n < q.size(); ++n) {
    if (q[n].size() != static_cast<size_t>(num_classes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", n, " of q has ", q[n].size(), " entries, expected ", num_classes));
    }
    for (int i = 0; i < num_classes; ++i) {
      if (!std::isfinite(q[n][i]) || q[n][i] < 0.0) {
        return absl::InvalidArgumentError(
            absl::StrCat("q[", n, "][", i, "] = ", q[n][i], " is not a finite non-negative value"));
      }
    }
  }
  for (int i = 0; i < num_classes; ++i) {
    double total = 0.0;
    for (const std::vector<double>& row : q) total += row[i];
    if (!std::isfinite(total)) {
      return absl::InvalidArgumentError(absl::StrCat("column ", i, " of q overflows when summed"));
    }
  }
  return absl::OkStatus();
}

// The chunk ends of one label: ends[n] = round(count · Σ_{m<=n} q[m][i] / Σ_m q[m][i]).
std::vector<int> ChunkEnds(const std::vector<std::vector<double>>& q, int label, int count) {
  const size_t num_clients = q.size();
  double total = 0.0;
  for (size_t n = 0; n < num_clients; ++n) total += q[n][label];
  std::vector<int> ends(num_clients);
  double prefix = 0.0;
  int previous = 0;
  for (size_t n = 0; n < num_clients; ++n) {
    // numpy's np.round is round-half-to-even, which is what nearbyint does by default.
    double end;
    if (total > 0.0) {
      prefix += q[n][label];
      end = std::nearbyint(count * prefix / total);
    } else {  // All-zero column: split the label evenly instead of dividing by zero.
      end = std::nearbyint(count * static_cast<double>(n + 1) / static_cast<double>(num_clients));
    }
    // Clamping only guards against rounding surprises; with non-negative q it never binds.
    previous = std::clamp(static_cast<int>(end), previous, count);
    ends[n] = previous;
  }
  ends.back() = count;
  return ends;
}

}  // namespace

absl::StatusOr<Partition> PartitionIid(int num_samples, int num_clients, base::Rng& rng) {
  FEDCL_RETURN_IF_ERROR(CheckPositive("num_clients", num_clients));
  if (num_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_samples is negative: ", num_samples));
  }
  std::vector<int> order(num_samples);
  std::iota(order.begin(), order.end(), 0);
  rng.Shuffle(order);
  Partition clients(num_clients);
  const int base_size = num_samples / num_clients;
  const int extra = num_samples % num_clients;
  auto next = order.begin();
  for (int n = 0; n < num_clients; ++n) {
    const int size = base_size + (n < extra ? 1 : 0);
    clients[n].assign(next, next + size);
    std::sort(clients[n].begin(), clients[n].end());
    next += size;
  }
  return clients;
}

absl::StatusOr<Partition> PartitionDirichlet(absl::Span<const int32_t> labels, int num_classes,
                                             int num_clients, double alpha, base::Rng& rng) {
  FEDCL_RETURN_IF_ERROR(CheckPositive("num_classes", num_classes));
  FEDCL_RETURN_IF_ERROR(CheckPositive("num_clients", num_clients));
  if (!(std::isfinite(alpha) && alpha > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Dirichlet alpha must be finite and positive, got ", alpha));
  }
  FEDCL_RETURN_IF_ERROR(CheckLabels(labels, num_classes));
  std::vector<std::vector<double>> q(num_clients);
  for (int n = 0; n < num_clients; ++n) q[n] = rng.Dirichlet(alpha, num_classes);
  return PartitionByLabelProportions(labels, num_classes, q);
}

absl::StatusOr<Partition> PartitionByLabelProportions(absl::Span<const int32_t> labels,
                                                      int num_classes,
                                                      const std::vector<std::vector<double>>& q) {
  FEDCL_RETURN_IF_ERROR(CheckPositive("num_classes", num_classes));
  FEDCL_RETURN_IF_ERROR(CheckProportions(q, num_classes));
  FEDCL_RETURN_IF_ERROR(CheckLabels(labels, num_classes));
  std::vector<std::vector<int>> by_label(num_classes);
  for (size_t j = 0; j < labels.size(); ++j) by_label[labels[j]].push_back(static_cast<int>(j));

  const size_t num_clients = q.size();
  Partition clients(num_clients);
  std::vector<std::vector<int>> ends(num_classes);
  for (int i = 0; i < num_classes; ++i) {
    ends[i] = ChunkEnds(q, i, static_cast<int>(by_label[i].size()));
  }
  for (size_t n = 0; n < num_clients; ++n) {
    for (int i = 0; i < num_classes; ++i) {
      const int start = n == 0 ? 0 : ends[i][n - 1];
      clients[n].insert(clients[n].end(), by_label[i].begin() + start,
                        by_label[i].begin() + ends[i][n]);
    }
  }
  return clients;
}

absl::StatusOr<Partition> PartitionShards(absl::Span<const int32_t> labels, int num_clients,
                                          int shards_per_client, base::Rng& rng) {
  FEDCL_RETURN_IF_ERROR(CheckPositive("num_clients", num_clients));
  FEDCL_RETURN_IF_ERROR(CheckPositive("shards_per_client", shards_per_client));
  const int64_t num_shards = int64_t{num_clients} * shards_per_client;
  const int64_t num_samples = static_cast<int64_t>(labels.size());
  if (num_samples < num_shards) {
    return absl::InvalidArgumentError(absl::StrCat(num_samples, " samples are too few for ",
                                                   num_clients, " clients x ", shards_per_client,
                                                   " shards (one sample per shard at least)"));
  }
  std::vector<int> sorted(labels.size());
  std::iota(sorted.begin(), sorted.end(), 0);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](int a, int b) { return labels[a] < labels[b]; });
  const int64_t base_size = num_samples / num_shards;
  const int64_t extra = num_samples % num_shards;
  auto shard_start = [&](int64_t s) { return s * base_size + std::min(s, extra); };

  std::vector<int> deal(num_shards);
  std::iota(deal.begin(), deal.end(), 0);
  rng.Shuffle(deal);
  Partition clients(num_clients);
  for (int n = 0; n < num_clients; ++n) {
    auto first = deal.begin() + int64_t{n} * shards_per_client;
    std::sort(first, first + shards_per_client);
    for (auto s = first; s != first + shards_per_client; ++s) {
      clients[n].insert(clients[n].end(), sorted.begin() + shard_start(*s),
                        sorted.begin() + shard_start(*s + 1));
    }
  }
  return clients;
}

absl::StatusOr<std::vector<double>> EmpiricalLabelDistribution(absl::Span<const int32_t> labels,
                                                               absl::Span<const int> indices,
                                                               int num_classes) {
  FEDCL_RETURN_IF_ERROR(CheckPositive("num_classes", num_classes));
  std::vector<double> distribution(num_classes, 0.0);
  for (int index : indices) {
    if (index < 0 || static_cast<size_t>(index) >= labels.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("index ", index, " is outside [0, ", labels.size(), ")"));
    }
    const int32_t label = labels[index];
    if (label < 0 || label >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("label ", label, " of sample ", index,
                                                     " is outside [0, ", num_classes, ")"));
    }
    distribution[label] += 1.0;
  }
  if (!indices.empty()) {
    for (double& p : distribution) p /= static_cast<double>(indices.size());
  }
  return distribution;
}

}  // namespace fedcl::data
