#include "core/fl/module_registry.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {

double SymmetricDivergence(const BlockStatistics& p, const BlockStatistics& q) {
  double sum = 0.0;
  const size_t d = p.mean.size();
  for (size_t i = 0; i < d; ++i) {
    const double vp = p.variance[i], vq = q.variance[i];
    const double diff = static_cast<double>(p.mean[i]) - q.mean[i];
    sum += vp / vq + vq / vp - 2.0 + diff * diff * (1.0 / vp + 1.0 / vq);
  }
  return sum / (2.0 * static_cast<double>(d));
}

absl::Status ModuleRegistry::Validate(const ModuleProposal& proposal) const {
  if (std::find(options_.expandable_blocks.begin(), options_.expandable_blocks.end(),
                proposal.block) == options_.expandable_blocks.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", proposal.block, " is not an expandable block"));
  }
  const BlockStatistics& s = proposal.statistics;
  if (static_cast<int>(s.mean.size()) != options_.statistics_dim ||
      s.variance.size() != s.mean.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("block statistics have ", s.mean.size(), " means and ", s.variance.size(),
                     " variances; the block has ", options_.statistics_dim, " dimensions"));
  }
  for (size_t i = 0; i < s.mean.size(); ++i) {
    if (!std::isfinite(s.mean[i]) || !std::isfinite(s.variance[i]) || !(s.variance[i] > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "block statistics are not finite with positive variances (dimension ", i, ")"));
    }
  }
  if (options_.layout) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<TensorSpec> expected,
                           options_.layout(proposal.spec, proposal.block));
    const auto& tensors = proposal.values.tensors();
    bool same = tensors.size() == expected.size();
    for (size_t i = 0; same && i < tensors.size(); ++i) {
      same = tensors[i].name == expected[i].name && tensors[i].shape == expected[i].shape;
    }
    if (!same) {
      return absl::InvalidArgumentError(
          absl::StrCat("module '", proposal.spec.name,
                       "' does not have the layout of its type at block ", proposal.block));
    }
  }
  if (!proposal.values.flat_values().allFinite()) {
    return absl::InvalidArgumentError("module values are not finite");
  }
  return absl::OkStatus();
}

absl::StatusOr<ProposalResult> ModuleRegistry::Propose(const ModuleProposal& proposal) {
  FEDCL_RETURN_IF_ERROR(Validate(proposal));
  // The closest group of this block still open to merging.
  const RegisteredModule* best = nullptr;
  double best_divergence = std::numeric_limits<double>::infinity();
  for (const auto& [id, module] : modules_) {
    if (module.block != proposal.block) continue;
    if (std::abs(proposal.round - module.created_round) > options_.round_window) continue;
    const double divergence = SymmetricDivergence(proposal.statistics, module.statistics);
    if (divergence < best_divergence) {
      best_divergence = divergence;
      best = &module;
    }
  }
  ProposalResult result;
  if (best != nullptr && best_divergence < options_.divergence_threshold) {
    RegisteredModule& module = modules_.at(best->id);
    if (std::find(module.proposers.begin(), module.proposers.end(), proposal.client) ==
        module.proposers.end()) {
      module.proposers.push_back(proposal.client);
    }
    ++merges_;
    result.module_id = module.id;
    result.merged = true;
    result.divergence = best_divergence;
    return result;
  }
  if (static_cast<int>(modules_.size()) >= options_.capacity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the module pool is at its capacity of ", options_.capacity, " modules"));
  }
  RegisteredModule module;
  module.id = next_id_++;
  module.name = absl::StrCat("block", proposal.block, "/m", module.id);
  module.block = proposal.block;
  module.created_round = proposal.round;
  module.spec = proposal.spec;
  module.spec.name = module.name;
  module.values = proposal.values;
  module.statistics = proposal.statistics;
  module.proposers = {proposal.client};
  result.module_id = module.id;
  modules_.emplace(module.id, std::move(module));
  holders_[result.module_id];
  return result;
}

absl::Status ModuleRegistry::AddHolder(int64_t id, ClientId client, int64_t round) {
  auto it = holders_.find(id);
  if (it == holders_.end()) return absl::NotFoundError(absl::StrCat("no module ", id));
  it->second.try_emplace(client, Holder{FedAuEnrol(round)});
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ModuleRegistry::Holders(int64_t id) const {
  auto it = holders_.find(id);
  if (it == holders_.end()) return absl::NotFoundError(absl::StrCat("no module ", id));
  return static_cast<int64_t>(it->second.size());
}

absl::StatusOr<double> ModuleRegistry::Weight(int64_t id, ClientId client, int64_t round,
                                              int64_t cutoff) const {
  auto it = holders_.find(id);
  if (it == holders_.end()) return absl::NotFoundError(absl::StrCat("no module ", id));
  auto holder = it->second.find(client);
  if (holder == it->second.end()) {
    return absl::NotFoundError(absl::StrCat("client ", client, " does not hold module ", id));
  }
  return FedAuWeightAt(holder->second.fedau, round, cutoff);
}

absl::StatusOr<double> ModuleRegistry::RecordParticipation(int64_t id, ClientId client,
                                                           int64_t round, int64_t cutoff) {
  auto it = holders_.find(id);
  if (it == holders_.end()) return absl::NotFoundError(absl::StrCat("no module ", id));
  auto holder = it->second.find(client);
  if (holder == it->second.end()) {
    return absl::NotFoundError(absl::StrCat("client ", client, " does not hold module ", id));
  }
  return FedAuParticipate(holder->second.fedau, round, cutoff);
}

const RegisteredModule* ModuleRegistry::Find(int64_t id) const {
  auto it = modules_.find(id);
  return it == modules_.end() ? nullptr : &it->second;
}

std::vector<const RegisteredModule*> ModuleRegistry::modules() const {
  std::vector<const RegisteredModule*> out;
  for (const auto& [id, module] : modules_) out.push_back(&module);
  return out;
}

}  // namespace fedcl::fl
