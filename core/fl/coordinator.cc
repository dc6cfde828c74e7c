#include "core/fl/coordinator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/fl/update_validation.h"
#include "core/peft/class_statistics.h"

namespace fedcl::fl {
// Weight summary over a list of weights: min, mean, max (zeros when empty).
void SummarizeWeights(const std::vector<double>& weights, double& min, double& mean, double& max) {
  if (weights.empty()) {
    min = mean = max = 0.0;
    return;
  }
  min = *std::min_element(weights.begin(), weights.end());
  max = *std::max_element(weights.begin(), weights.end());
  double total = 0.0;
  for (double w : weights) total += w;
  mean = total / weights.size();
}

namespace {

// A module of `layout`'s tensors holding `values` (an earlier version, or a mean of several).
std::shared_ptr<const nn::ParameterSet> WithValues(const nn::ParameterSet& layout,
                                                   absl::Span<const float> values) {
  auto set = std::make_shared<nn::ParameterSet>(layout);
  std::copy(values.begin(), values.end(), set->flat_values().begin());
  return set;
}

}  // namespace

absl::string_view RoundStateName(RoundState state) {
  switch (state) {
    case RoundState::kOpen:
      return "open";
    case RoundState::kCollecting:
      return "collecting";
    case RoundState::kClosing:
      return "closing";
  }
  return "unknown";
}

absl::Status CoordinatorOptions::Validate() const {
  FEDCL_ASSIGN_OR_RETURN(std::shared_ptr<const AggregationRule> rule,
                         CreateAggregationRule(aggregator));
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<RoundPolicy> policy, CreateRoundPolicy(round));
  if (rule->trains_from_client_base() && policy->max_staleness() > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "coordinator: aggregator.name ", rule->name(),
        " trains each client from a base of its own and needs synchronous rounds; round policy '",
        round.name, "' is asynchronous"));
  }
  FEDCL_RETURN_IF_ERROR(recipe.Validate());
  FEDCL_RETURN_IF_ERROR(ValidateCompressionSpec(upload_compression));
  if (!(max_update_norm >= 0.0) || !std::isfinite(max_update_norm)) {
    return absl::InvalidArgumentError("coordinator: max_update_norm must be >= 0");
  }
  for (const auto& [client, p] : participation_probability) {
    if (!(p > 0.0 && p <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("coordinator: participation probability of client ", client, " is ", p,
                       ", not in (0, 1]"));
    }
  }
  if (max_retry_after <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("coordinator: max_retry_after must be positive");
  }
  if (fold_threads < 1 || fold_threads > 256) {
    return absl::InvalidArgumentError("coordinator: fold_threads must be in [1, 256]");
  }
  return pool.Validate();
}

Coordinator::Coordinator(const CoordinatorOptions& options, base::Clock& clock, StateStore* store)
    : options_(options),
      clock_(clock),
      store_(store),
      arena_(std::make_unique<tbb::task_arena>(options.fold_threads)) {
  // Validate() passed, so the rules and the policy build.
  RuleConfig config = options_.aggregator;
  config.participation_probability = &options_.participation_probability;
  rule_ = *CreateAggregationRule(config);
  // Experts are FedAU per (client, module) whatever the base rule: their N and weights are the
  // module's own, which only the adaptive rule takes as given.
  config.name = "adaptive";
  config.options.clear();
  expert_rule_ = *CreateAggregationRule(config);
  // Statistics are summed exactly whatever the base rule (rules/sum.cc).
  statistics_rule_ = *CreateAggregationRule({.name = "sum"});
  absl::MutexLock lock(&mu_);
  policy_ = *CreateRoundPolicy(options_.round);
}

Coordinator::~Coordinator() = default;

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(
    const CoordinatorOptions& options, base::Clock& clock, StateStore* store,
    std::vector<StoredModule> modules) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  for (const StoredModule& module : modules) {
    if (module.spec.role == ModuleRole::kExpert) {
      return absl::InvalidArgumentError(
          absl::StrCat("coordinator: module '", module.spec.name,
                       "' is an expert; experts join the pool through ProposeModule"));
    }
  }
  std::unique_ptr<Coordinator> c(new Coordinator(options, clock, store));
  absl::MutexLock lock(&c->mu_);
  if (store != nullptr) {
    // The initial pool is durable before round 0 opens, as the close of round -1, so a crash
    // before the first close still recovers.
    RoundClose initial;
    initial.closed_round = -1;
    initial.modules = modules;
    FEDCL_RETURN_IF_ERROR(store->RoundClosed(initial));
  }
  FEDCL_RETURN_IF_ERROR(c->InitModules(std::move(modules)));
  FEDCL_RETURN_IF_ERROR(c->RestorePoolLocked({}));
  FEDCL_RETURN_IF_ERROR(c->OpenRoundLocked(0, clock.Now()));
  return c;
}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Recover(const CoordinatorOptions& options,
                                                                  base::Clock& clock,
                                                                  StateStore* store,
                                                                  StoredState state) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<Coordinator> c(new Coordinator(options, clock, store));
  absl::MutexLock lock(&c->mu_);
  FEDCL_RETURN_IF_ERROR(c->InitModules(std::move(state.modules)));
  FEDCL_RETURN_IF_ERROR(c->RestorePoolLocked(std::move(state.pool)));
  for (PooledModule& module : c->modules_) {
    auto memory = state.aggregator_memory.find(module.spec.name);
    if (memory != state.aggregator_memory.end()) {
      FEDCL_RETURN_IF_ERROR(module.aggregator->ImportMemory(memory->second));
      if (module.aggregator->rule().stores_client_deltas()) {
        MemoryPeaks& peaks = c->memory_peaks_[module.spec.name];
        for (const auto& [client, y] : memory->second) {
          float peak = 0.0f;
          for (float v : y) peak = std::max(peak, std::abs(v));
          peaks.Set(client, peak);
        }
      }
    }
  }
  for (const ClientRecord& client : state.clients) {
    FEDCL_RETURN_IF_ERROR(c->clients_.Put(client));
    c->active_clients_ += client.revoked ? 0 : 1;
    // Revocations since the last close are not persisted as such: forget every revoked client's
    // stored vector (FedVARP, MIFA) now, which is idempotent for those forgotten before.
    if (client.revoked) {
      for (PooledModule& module : c->modules_) c->ForgetStoredDeltaLocked(module, client.id);
    }
  }
  const absl::Time now = clock.Now();
  if (!state.open_round.has_value()) {
    FEDCL_RETURN_IF_ERROR(c->OpenRoundLocked(state.last_closed_round + 1, now));
    return c;
  }
  // Resume the round in progress with its original deadline and the updates it had accepted.
  const RoundRecord& open = *state.open_round;
  c->round_ = open.round;
  c->opened_ = open.opened;
  c->deadline_ = open.deadline;
  c->policy_->Open(open.round, open.opened);  // resets the policy's per-round state
  c->state_ = RoundState::kOpen;
  for (PooledModule& module : c->modules_) module.aggregator->BeginRound(open.round);
  FEDCL_RETURN_IF_ERROR(c->ReplayJournalLocked(state.journal));
  // A round whose deadline passed while nobody was running closes now if the policy says so.
  if (c->policy_->OnTick(c->ProgressLocked(), now) == RoundPolicy::TickAction::kClose) {
    FEDCL_RETURN_IF_ERROR(c->CloseRoundLocked());
  }
  return c;
}

absl::Status Coordinator::ReplayJournalLocked(std::vector<JournalEntry>& journal) {
  for (JournalEntry& entry : journal) {
    if (entry.round != round_ || accepted_.contains(entry.client)) continue;
    UpdateSubmission replay;
    replay.client = entry.client;
    replay.round = entry.base_round >= 0 ? entry.base_round : entry.round;
    replay.num_samples = entry.num_samples;
    replay.loss = entry.loss;
    size_t offset = 0;
    for (const std::string& name : entry.module_names) {
      PooledModule* module = FindModuleLocked(name);
      if (module == nullptr) {
        return absl::DataLossError(absl::StrCat("journal of round ", round_, " names module '",
                                                name, "', which the stored pool lacks"));
      }
      const size_t size = static_cast<size_t>(module->values->num_values());
      if (offset + size > entry.values.size()) {
        return absl::DataLossError(
            absl::StrCat("journal entry of client ", entry.client, " is shorter than its modules"));
      }
      ModuleDelta delta;
      delta.name = name;
      delta.values = absl::MakeSpan(entry.values).subspan(offset, size);
      replay.modules.push_back(std::move(delta));
      offset += size;
    }
    FEDCL_ASSIGN_OR_RETURN(std::vector<double> weights, DeltaWeightsLocked(replay, entry.weight));
    std::vector<float> largest;  // as ReserveMagnitude did (journaled values are as folded)
    SquaredNorm(replay, &largest);
    for (size_t i = 0; i < replay.modules.size(); ++i) {
      round_magnitude_[replay.modules[i].name] += weights[i] * largest[i];
    }
    // The journaled values are already scaled by the staleness factor, as they were folded.
    FEDCL_RETURN_IF_ERROR(FoldAll(replay, weights, AggregatorsForLocked(replay)));
    StoreMemoryPeaksLocked(replay, largest);
    CountContributionLocked(replay);
    accepted_[entry.client] = entry.weight * policy_->StalenessWeight(round_ - replay.round);
    round_samples_ += entry.num_samples;
    round_loss_sum_ += entry.loss * entry.num_samples;
    round_staleness_sum_ += round_ - replay.round;
    round_staleness_max_ = std::max(round_staleness_max_, round_ - replay.round);
    state_ = RoundState::kCollecting;
  }
  return absl::OkStatus();
}

void Coordinator::ForgetStoredDeltaLocked(PooledModule& module, ClientId client) {
  module.aggregator->ForgetClient(client).IgnoreError();
  if (auto peaks = memory_peaks_.find(module.spec.name); peaks != memory_peaks_.end())
    peaks->second.Forget(client);
}

absl::Status Coordinator::InitModules(std::vector<StoredModule> modules) {
  if (modules.empty()) return absl::InvalidArgumentError("coordinator: no modules to train");
  for (StoredModule& stored : modules) {
    if (FindModuleLocked(stored.spec.name) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("coordinator: two modules are named '", stored.spec.name, "'"));
    }
    if (stored.values.num_values() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("coordinator: module '", stored.spec.name, "' is empty"));
    }
    if (stored.spec.role == ModuleRole::kClassStatistics) {
      const nn::Shape sums =
          stored.values.num_tensors() > 0 ? stored.values.info(0).shape : nn::Shape{};
      absl::Status s = sums.size() == 2
                           ? peft::CheckClassStatistics(stored.values, sums[0], sums[1])
                           : absl::InvalidArgumentError("class_sums must be 2-D");
      if (!s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("coordinator: module '", stored.spec.name, "': ", s.message()));
      }
    }
    PooledModule module;
    module.spec = std::move(stored.spec);
    module.version = stored.version;
    module.aggregator = ModuleAggregator::Create(RuleFor(module.spec.role),
                                                 stored.values.num_values(), arena_.get());
    stored.values.DropGradients();  // the pool only keeps values
    module.values = std::make_shared<const nn::ParameterSet>(std::move(stored.values));
    modules_.push_back(std::move(module));
  }
  return absl::OkStatus();
}

int64_t Coordinator::TrainingVersionLocked(const PooledModule& module, ClientId client) const {
  if (!module.aggregator->rule().trains_from_client_base()) return module.version;
  return module.aggregator->ClientBaseVersion(client).value_or(module.version);
}

Coordinator::PooledModule* Coordinator::FindModuleLocked(absl::string_view name) {
  for (PooledModule& module : modules_) {
    if (module.spec.name == name) return &module;
  }
  return nullptr;
}

const Coordinator::PooledModule* Coordinator::FindModuleLocked(absl::string_view name) const {
  for (const PooledModule& module : modules_) {
    if (module.spec.name == name) return &module;
  }
  return nullptr;
}

void Coordinator::CountContributionLocked(const UpdateSubmission& update) {
  for (const ModuleDelta& delta : update.modules) {
    PooledModule* module = FindModuleLocked(delta.name);
    ++module->participants;
    if (module->pool_id != 0) module->contributors.push_back(update.client);
  }
}

int64_t Coordinator::EnrolledLocked() const {
  // A client whose update this round was accepted counts in this round's N even if it left
  // since: its revocation takes effect from the next round (and N is never below |S|).
  // O(participants), not O(N): only the accepted clients are checked for a revocation.
  int64_t count = active_clients_;
  for (const auto& [id, weight] : accepted_) {
    count += clients_.IsRevoked(id) ? 1 : 0;
  }
  return count;
}

double Coordinator::WeightLocked(const ClientRecord& client, int64_t round) const {
  return rule_->ClientWeight(client, round);
}

absl::StatusOr<int64_t> Coordinator::Enroll(ClientId client) {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  const std::optional<ClientRecord> existing = clients_.Find(client);
  if (existing.has_value() && !existing->revoked) return existing->enrolled_round;
  ClientRecord record;
  record.id = client;
  record.enrolled_round = round_;
  record.fedau = FedAuEnrol(round_);
  if (store_ != nullptr) FEDCL_RETURN_IF_ERROR(store_->PutClient(record));
  FEDCL_RETURN_IF_ERROR(clients_.Put(record));
  ++active_clients_;
  return round_;
}

absl::Status Coordinator::Leave(ClientId client, bool permanent) {
  absl::MutexLock lock(&mu_);
  std::optional<ClientRecord> record = clients_.Find(client);
  if (!record.has_value()) return absl::NotFoundError(absl::StrCat("unknown client ", client));
  if (!permanent || record->revoked) return absl::OkStatus();
  record->revoked = true;
  if (store_ != nullptr) FEDCL_RETURN_IF_ERROR(store_->PutClient(*record));
  FEDCL_RETURN_IF_ERROR(clients_.Put(*record));
  --active_clients_;
  revoked_since_close_.push_back(client);
  return absl::OkStatus();
}

absl::StatusOr<WorkAssignment> Coordinator::GetWork(ClientId client,
                                                    absl::Span<const ModuleVersion> held) {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  const std::optional<ClientRecord> record = clients_.Find(client);
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("unknown client ", client, ": join first"));
  }
  if (record->revoked) {
    return absl::FailedPreconditionError(absl::StrCat("client ", client, " left permanently"));
  }
  WorkAssignment work;
  work.round = round_;
  work.deadline = deadline_;
  work.recipe = options_.recipe;
  FEDCL_ASSIGN_OR_RETURN(const std::vector<int> expert_blocks, HandOutExpertsLocked(client));
  for (const PooledModule& module : modules_) {
    if (module.pool_id != 0 && std::find(expert_blocks.begin(), expert_blocks.end(),
                                         module.spec.block) == expert_blocks.end()) {
      continue;
    }
    ModuleInfo info{module.spec, TrainingVersionLocked(module, client), module.values->num_values(),
                    true, module.descriptor != nullptr};
    if (module.spec.role != ModuleRole::kClassStatistics) info.upload = options_.upload_compression;
    for (const ModuleVersion& h : held) {
      if (h.name == module.spec.name && h.version == info.version) info.download = false;
    }
    work.modules.push_back(std::move(info));
  }
  const bool busy = accepted_.contains(client) || in_flight_.contains(client);
  if (state_ == RoundState::kClosing || busy) {
    work.action = WorkAssignment::Action::kWait;
    work.retry_after = std::clamp(deadline_ - clock_.Now(), absl::Milliseconds(100),
                                  std::max(options_.max_retry_after, absl::Milliseconds(100)));
  } else {
    work.action = WorkAssignment::Action::kTrain;
  }
  return work;
}

absl::StatusOr<ModuleSnapshot> Coordinator::GetModule(absl::string_view name,
                                                      int64_t version) const {
  absl::MutexLock lock(&mu_);
  for (const PooledModule& module : modules_) {
    if (module.spec.name != name) continue;
    if (module.version == version) {
      return ModuleSnapshot{module.spec, module.version, module.values, module.descriptor};
    }
    // An earlier version that is still some client's base (FedAWE).
    if (std::shared_ptr<const std::vector<float>> base = module.aggregator->BaseValues(version);
        base != nullptr) {
      return ModuleSnapshot{module.spec, version, WithValues(*module.values, *base), nullptr};
    }
    return absl::NotFoundError(
        absl::StrCat("module '", name, "' is at version ", module.version, ", not ", version));
  }
  return absl::NotFoundError(absl::StrCat("no module named '", name, "'"));
}

std::vector<ModuleSnapshot> Coordinator::Modules() const {
  absl::MutexLock lock(&mu_);
  std::vector<ModuleSnapshot> snapshots;
  for (const PooledModule& module : modules_) {
    snapshots.push_back({module.spec, module.version, module.values, module.descriptor});
  }
  return snapshots;
}

std::vector<ModuleSnapshot> Coordinator::ClientMeanModules() const {
  absl::MutexLock lock(&mu_);
  const int64_t enrolled = EnrolledLocked();
  std::vector<ModuleSnapshot> snapshots;
  for (const PooledModule& module : modules_) {
    snapshots.push_back({module.spec, module.version, module.values, module.descriptor});
    if (!module.aggregator->rule().trains_from_client_base()) continue;
    const auto& current = module.values->flat_values();
    const std::vector<float> mean = module.aggregator->MeanClientBase(
        enrolled, absl::MakeConstSpan(current.data(), current.size()));
    snapshots.back().version = -1;
    snapshots.back().values = WithValues(*module.values, mean);
  }
  return snapshots;
}

CoordinatorStatus Coordinator::Status() const {
  absl::MutexLock lock(&mu_);
  CoordinatorStatus status;
  status.round = round_;
  status.state = state_;
  status.deadline = deadline_;
  status.accepted = static_cast<int64_t>(accepted_.size());
  status.enrolled = EnrolledLocked();
  status.aggregator = std::string(rule_->name());
  for (const PooledModule& module : modules_)
    status.modules.push_back({module.spec.name, module.version});
  std::vector<double> weights;
  clients_.ForEach(0, clients_.size(), [&](const ClientRecord& record) {
    ClientStatus client{record, WeightLocked(record, round_)};
    if (!record.revoked) weights.push_back(client.current_weight);
    status.clients.push_back(client);
  });
  SummarizeWeights(weights, status.weight_min, status.weight_mean, status.weight_max);
  status.pool = PoolStatusLocked();
  status.pool_merges = registry_->merges();
  return status;
}

std::vector<ClientStatus> Coordinator::Clients(ClientId first, int64_t limit) const {
  absl::MutexLock lock(&mu_);
  std::vector<ClientStatus> clients;
  clients_.ForEach(first, limit, [&](const ClientRecord& record) {
    clients.push_back({record, WeightLocked(record, round_)});
  });
  return clients;
}

int64_t Coordinator::current_round() const {
  absl::MutexLock lock(&mu_);
  return round_;
}

std::vector<RoundReport> Coordinator::TakeRoundReports() {
  absl::MutexLock lock(&mu_);
  std::vector<RoundReport> reports = std::move(reports_);
  reports_.clear();
  return reports;
}

int64_t Coordinator::aggregator_memory_bytes() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const PooledModule& module : modules_) total += module.aggregator->memory_bytes();
  return total;
}

}  // namespace fedcl::fl
