// Coordinator: the growing pool of expert modules (the contract is in coordinator.h). Kept apart
// from coordinator.cc, which is the round state machine for every module.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/fl/coordinator.h"

namespace fedcl::fl {
namespace {

ModuleRegistryOptions RegistryOptions(const ModulePoolOptions& pool) {
  ModuleRegistryOptions o;
  o.expandable_blocks = pool.expandable_blocks;
  o.statistics_dim = pool.statistics_dim;
  o.capacity = pool.capacity;
  o.round_window = pool.round_window;
  o.divergence_threshold = pool.divergence_threshold;
  o.layout = [dim = pool.statistics_dim, bottleneck = pool.expert_bottleneck](
                 const ModuleSpec& spec, int block) -> absl::StatusOr<std::vector<TensorSpec>> {
    if (spec.role != ModuleRole::kExpert) {
      return absl::InvalidArgumentError(absl::StrCat("the pool grows by expert modules only, not '",
                                                     ModuleRoleName(spec.role), "'"));
    }
    return ExpertLayout(dim, bottleneck);
  };
  return o;
}

}  // namespace

const std::shared_ptr<const AggregationRule>& Coordinator::RuleFor(ModuleRole role) const {
  if (role == ModuleRole::kExpert) return expert_rule_;
  return role == ModuleRole::kClassStatistics ? statistics_rule_ : rule_;
}

absl::Status Coordinator::RestorePoolLocked(ModuleRegistryState state) {
  FEDCL_ASSIGN_OR_RETURN(ModuleRegistry registry,
                         ModuleRegistry::Restore(RegistryOptions(options_.pool), std::move(state)));
  registry_ = std::make_unique<ModuleRegistry>(std::move(registry));
  // Experts stored at the last close: link them to their registry entries.
  for (PooledModule& module : modules_) {
    if (module.spec.role != ModuleRole::kExpert) continue;
    const RegisteredModule* registered = nullptr;
    for (const RegisteredModule* m : registry_->modules()) {
      if (m->name == module.spec.name) registered = m;
    }
    if (registered == nullptr) {
      return absl::DataLossError(absl::StrCat("stored expert module '", module.spec.name,
                                              "' is not in the stored pool registry"));
    }
    module.pool_id = registered->id;
    module.spec.block = registered->block;  // the registry is authoritative
    if (registered->descriptor.num_values() > 0) {
      module.descriptor = std::make_shared<const nn::ParameterSet>(registered->descriptor);
    }
  }
  // Experts founded since: they start from their founding values, at version 0.
  for (const RegisteredModule* registered : registry_->modules()) {
    if (FindModuleLocked(registered->name) == nullptr) AddExpertLocked(*registered, false);
  }
  return absl::OkStatus();
}

void Coordinator::AddExpertLocked(const RegisteredModule& registered, bool round_open) {
  PooledModule module;
  module.spec = registered.spec;
  module.version = 0;
  module.pool_id = registered.id;
  module.aggregator = ModuleAggregator::Create(RuleFor(ModuleRole::kExpert),
                                               registered.values.num_values(), arena_.get());
  // A restart opens (or resumes) the round for every module at once, this one included.
  if (round_open) module.aggregator->BeginRound(round_);
  nn::ParameterSet values = registered.values;
  values.DropGradients();
  module.values = std::make_shared<const nn::ParameterSet>(std::move(values));
  if (registered.descriptor.num_values() > 0) {
    module.descriptor = std::make_shared<const nn::ParameterSet>(registered.descriptor);
  }
  modules_.push_back(std::move(module));
}

absl::StatusOr<ProposalResult> Coordinator::ProposeModule(const ModuleProposal& proposal) {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  if (!options_.pool.enabled()) {
    return absl::FailedPreconditionError(
        "module pool growth is disabled: no expandable blocks are configured");
  }
  const std::optional<ClientRecord> record = clients_.Find(proposal.client);
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("unknown client ", proposal.client, ": join first"));
  }
  if (record->revoked) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", proposal.client, " left permanently"));
  }
  if (proposal.round < 0) {
    return absl::InvalidArgumentError(absl::StrCat("proposal round ", proposal.round));
  }
  if (proposal.round > round_) {
    return absl::OutOfRangeError(
        absl::StrCat("round ", proposal.round, " has not opened; the current round is ", round_));
  }
  FEDCL_ASSIGN_OR_RETURN(ProposalPlan plan, registry_->Plan(proposal));
  const ProposalResult result = plan.result;
  const bool new_holder = !registry_->IsHolder(result.module_id, proposal.client);
  if (store_ != nullptr) {
    PoolProposalRecord stored;
    stored.module = plan.module;
    stored.next_id = result.merged ? registry_->next_id() : result.module_id + 1;
    stored.merges = registry_->merges() + (result.merged ? 1 : 0);
    if (new_holder) {
      stored.new_holders.push_back({result.module_id, proposal.client, FedAuEnrol(round_)});
    }
    FEDCL_RETURN_IF_ERROR(store_->PoolProposal(stored));
  }
  registry_->Apply(std::move(plan));
  FEDCL_CHECK_OK(registry_->AddHolder(result.module_id, proposal.client, round_));
  if (!result.merged) AddExpertLocked(*registry_->Find(result.module_id), true);
  return result;
}

absl::StatusOr<bool> Coordinator::AttachDescriptor(ClientId client, absl::string_view name,
                                                   const nn::ParameterSet& descriptor) {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  const std::optional<ClientRecord> record = clients_.Find(client);
  if (!record.has_value())
    return absl::NotFoundError(absl::StrCat("unknown client ", client, ": join first"));
  if (record->revoked)
    return absl::FailedPreconditionError(absl::StrCat("client ", client, " left permanently"));
  PooledModule* module = FindModuleLocked(name);
  if (module == nullptr || module->pool_id == 0) {
    return absl::NotFoundError(absl::StrCat("'", name, "' is not an expert of the module pool"));
  }
  // Only a device whose proposal founded or joined the expert trained a descriptor for it; every
  // other holder received the expert with the block's mixture.
  const std::vector<ClientId>& proposers = registry_->Find(module->pool_id)->proposers;
  if (std::find(proposers.begin(), proposers.end(), client) == proposers.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", client, " did not propose '", name, "'"));
  }
  if (descriptor.num_values() == 0)
    return absl::InvalidArgumentError(absl::StrCat("an empty descriptor for '", name, "'"));
  if (!descriptor.flat_values().allFinite()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the descriptor for '", name, "' has non-finite values"));
  }
  if (module->descriptor != nullptr) return false;  // the first one stays
  RegisteredModule updated = *registry_->Find(module->pool_id);
  updated.descriptor = descriptor;
  updated.descriptor.DropGradients();
  if (store_ != nullptr) {
    PoolProposalRecord stored;  // the module replaced by id; the counters as they are
    stored.module = updated;
    stored.next_id = registry_->next_id();
    stored.merges = registry_->merges();
    FEDCL_RETURN_IF_ERROR(store_->PoolProposal(stored));
  }
  module->descriptor = std::make_shared<const nn::ParameterSet>(updated.descriptor);
  FEDCL_CHECK_OK(registry_->SetDescriptor(module->pool_id, std::move(updated.descriptor)));
  return true;
}

absl::StatusOr<std::vector<int>> Coordinator::HandOutExpertsLocked(ClientId client) {
  std::vector<int> blocks;
  for (const PooledModule& module : modules_) {
    if (module.pool_id != 0 && registry_->IsHolder(module.pool_id, client) &&
        std::find(blocks.begin(), blocks.end(), module.spec.block) == blocks.end()) {
      blocks.push_back(module.spec.block);
    }
  }
  std::vector<PoolHolder> added;
  for (const PooledModule& module : modules_) {
    if (module.pool_id == 0 || registry_->IsHolder(module.pool_id, client)) continue;
    if (std::find(blocks.begin(), blocks.end(), module.spec.block) == blocks.end()) continue;
    added.push_back({module.pool_id, client, FedAuEnrol(round_)});
  }
  if (added.empty()) return blocks;
  if (store_ != nullptr) FEDCL_RETURN_IF_ERROR(store_->PutPoolHolders(added));
  for (const PoolHolder& holder : added) {
    FEDCL_CHECK_OK(registry_->AddHolder(holder.module_id, holder.client, round_));
  }
  return blocks;
}

absl::StatusOr<std::vector<double>> Coordinator::DeltaWeightsLocked(const UpdateSubmission& update,
                                                                    double client_weight) const {
  std::vector<double> weights;
  for (const ModuleDelta& delta : update.modules) {
    const PooledModule* module = FindModuleLocked(delta.name);
    if (module != nullptr && module->spec.role == ModuleRole::kClassStatistics) {
      weights.push_back(1.0);  // summed as sent (rules/sum.cc)
      continue;
    }
    if (module == nullptr || module->pool_id == 0) {
      weights.push_back(client_weight);
      continue;
    }
    absl::StatusOr<double> weight =
        registry_->Weight(module->pool_id, update.client, round_, options_.aggregator.fedau_cutoff);
    if (!weight.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("client ", update.client,
                                                        " does not hold module '", delta.name,
                                                        "': ask for work to receive it first"));
    }
    weights.push_back(*weight);
  }
  return weights;
}

int64_t Coordinator::DivisorLocked(const PooledModule& module, int64_t enrolled) const {
  if (module.pool_id == 0) return enrolled;
  return registry_->Holders(module.pool_id).value_or(0);
}

std::vector<PoolHolder> Coordinator::PoolParticipationsLocked() const {
  std::vector<PoolHolder> holders;
  for (const PooledModule& module : modules_) {
    for (ClientId client : module.contributors) {
      // Contributors were holders when admitted, and holders are never removed.
      FedAuClientState state = registry_->HolderState(module.pool_id, client).value();
      FEDCL_CHECK_OK(FedAuParticipate(state, round_, options_.aggregator.fedau_cutoff).status());
      holders.push_back({module.pool_id, client, state});
    }
  }
  // The store's write order is deterministic whatever the arrival order.
  std::sort(holders.begin(), holders.end(), [](const PoolHolder& a, const PoolHolder& b) {
    return a.module_id != b.module_id ? a.module_id < b.module_id : a.client < b.client;
  });
  return holders;
}

std::vector<PoolModuleStatus> Coordinator::PoolStatusLocked() const {
  std::vector<PoolModuleStatus> pool;
  for (const PooledModule& module : modules_) {
    if (module.pool_id == 0) continue;
    pool.push_back({module.spec.name, module.spec.block, module.version,
                    static_cast<int64_t>(module.contributors.size()),
                    registry_->Holders(module.pool_id).value_or(0)});
  }
  return pool;
}

}  // namespace fedcl::fl
