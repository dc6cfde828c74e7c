#include "core/fl/module_registry.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {

std::vector<TensorSpec> ExpertLayout(int dim, int bottleneck) {
  const int64_t d = dim, b = bottleneck;
  return {{"down.weight", {b, d}}, {"down.bias", {b}},        {"up.weight", {d, b}},
          {"up.bias", {d}},        {"router.weight", {1, d}}, {"router.bias", {1}}};
}

absl::Status ModulePoolOptions::Validate() const {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("module pool: ", what));
  };
  for (size_t i = 0; i < expandable_blocks.size(); ++i) {
    if (expandable_blocks[i] < 0) return bad("expandable_blocks must be >= 0");
    for (size_t j = 0; j < i; ++j) {
      if (expandable_blocks[j] == expandable_blocks[i]) {
        return bad(absl::StrCat("block ", expandable_blocks[i], " is listed twice"));
      }
    }
  }
  if (statistics_dim < 1 || statistics_dim > 65536) {
    return bad(absl::StrCat("statistics_dim = ", statistics_dim, " is not in [1, 65536]"));
  }
  if (capacity < 1 || capacity > 4096) {
    return bad(absl::StrCat("capacity = ", capacity, " is not in [1, 4096]"));
  }
  if (round_window < 0) return bad(absl::StrCat("round_window = ", round_window, " is negative"));
  if (!std::isfinite(divergence_threshold) || !(divergence_threshold > 0.0)) {
    return bad(
        absl::StrCat("divergence_threshold = ", divergence_threshold, " must be finite and > 0"));
  }
  if (expert_bottleneck < 1 || expert_bottleneck > statistics_dim) {
    return bad(absl::StrCat("expert_bottleneck = ", expert_bottleneck, " is not in [1, ",
                            statistics_dim, "]"));
  }
  return absl::OkStatus();
}

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
  if (!proposal.descriptor.flat_values().allFinite()) {
    return absl::InvalidArgumentError("module descriptor values are not finite");
  }
  return absl::OkStatus();
}

absl::StatusOr<ProposalResult> ModuleRegistry::Propose(const ModuleProposal& proposal) {
  FEDCL_ASSIGN_OR_RETURN(ProposalPlan plan, Plan(proposal));
  const ProposalResult result = plan.result;
  Apply(std::move(plan));
  return result;
}

absl::StatusOr<ProposalPlan> ModuleRegistry::Plan(const ModuleProposal& proposal) const {
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
  ProposalPlan plan;
  if (best != nullptr && best_divergence < options_.divergence_threshold) {
    plan.module = *best;
    if (std::find(plan.module.proposers.begin(), plan.module.proposers.end(), proposal.client) ==
        plan.module.proposers.end()) {
      plan.module.proposers.push_back(proposal.client);
    }
    plan.result = {best->id, best->name, /*merged=*/true, best_divergence};
    return plan;
  }
  if (static_cast<int>(modules_.size()) >= options_.capacity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the module pool is at its capacity of ", options_.capacity, " modules"));
  }
  RegisteredModule& module = plan.module;
  module.id = next_id_;
  module.name = absl::StrCat("block", proposal.block, "/m", module.id);
  module.block = proposal.block;
  module.created_round = proposal.round;
  module.spec = proposal.spec;
  module.spec.name = module.name;
  module.spec.block = proposal.block;
  module.values = proposal.values;
  module.descriptor = proposal.descriptor;
  module.statistics = proposal.statistics;
  module.proposers = {proposal.client};
  plan.result.module_id = module.id;
  plan.result.name = module.name;
  return plan;
}

absl::Status ModuleRegistry::SetDescriptor(int64_t id, nn::ParameterSet descriptor) {
  auto it = modules_.find(id);
  if (it == modules_.end()) return absl::NotFoundError(absl::StrCat("no pool module ", id));
  descriptor.DropGradients();
  it->second.descriptor = std::move(descriptor);
  return absl::OkStatus();
}

void ModuleRegistry::Apply(ProposalPlan plan) {
  const int64_t id = plan.result.module_id;
  if (plan.result.merged) {
    ++merges_;
  } else {
    next_id_ = std::max(next_id_, id + 1);
    holders_[id];
  }
  modules_.insert_or_assign(id, std::move(plan.module));
}

absl::StatusOr<ModuleRegistry> ModuleRegistry::Restore(ModuleRegistryOptions options,
                                                       ModuleRegistryState state) {
  ModuleRegistry registry(std::move(options));
  registry.next_id_ = state.next_id;
  registry.merges_ = state.merges;
  for (RegisteredModule& module : state.modules) {
    if (module.id < 1 || module.id >= state.next_id || registry.modules_.contains(module.id)) {
      return absl::DataLossError(absl::StrCat("stored pool: module id ", module.id,
                                              " is repeated or not below ", state.next_id));
    }
    registry.holders_[module.id];
    module.spec.name = module.name;
    module.spec.block = module.block;
    const int64_t id = module.id;
    registry.modules_.emplace(id, std::move(module));
  }
  for (const PoolHolder& holder : state.holders) {
    auto it = registry.holders_.find(holder.module_id);
    if (it == registry.holders_.end()) {
      return absl::DataLossError(absl::StrCat("stored pool: client ", holder.client,
                                              " holds unknown module ", holder.module_id));
    }
    if (absl::Status valid = ValidateFedAuClientState(holder.fedau); !valid.ok()) {
      return absl::DataLossError(absl::StrCat("stored pool: ", valid.message()));
    }
    it->second[holder.client] = Holder{holder.fedau};
  }
  return registry;
}

ModuleRegistryState ModuleRegistry::ExportState() const {
  ModuleRegistryState state;
  state.next_id = next_id_;
  state.merges = merges_;
  for (const auto& [id, module] : modules_) state.modules.push_back(module);
  for (const auto& [id, holders] : holders_) {
    const size_t first = state.holders.size();
    for (const auto& [client, holder] : holders)
      state.holders.push_back({id, client, holder.fedau});
    // Hash order is not deterministic; the stored order is.
    std::sort(state.holders.begin() + first, state.holders.end(),
              [](const PoolHolder& a, const PoolHolder& b) { return a.client < b.client; });
  }
  return state;
}

bool ModuleRegistry::IsHolder(int64_t id, ClientId client) const {
  auto it = holders_.find(id);
  return it != holders_.end() && it->second.contains(client);
}

absl::StatusOr<FedAuClientState> ModuleRegistry::HolderState(int64_t id, ClientId client) const {
  auto it = holders_.find(id);
  if (it == holders_.end()) return absl::NotFoundError(absl::StrCat("no module ", id));
  auto holder = it->second.find(client);
  if (holder == it->second.end()) {
    return absl::NotFoundError(absl::StrCat("client ", client, " does not hold module ", id));
  }
  return holder->second.fedau;
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
