#include "core/fl/coordinator.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/fl/update_validation.h"

namespace fedcl::fl {
namespace {

// Weight summary over a list of weights: min, mean, max (zeros when empty).
void Summarize(const std::vector<double>& weights, double& min, double& mean, double& max) {
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

bool SameValues(const nn::ParameterSet& a, const nn::ParameterSet& b) {
  return a.num_values() == b.num_values() &&
         std::memcmp(a.flat_values().data(), b.flat_values().data(),
                     sizeof(float) * a.num_values()) == 0;
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
  FEDCL_RETURN_IF_ERROR(aggregator.Validate());
  FEDCL_RETURN_IF_ERROR(recipe.Validate());
  if (round_duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("coordinator: round_duration must be positive");
  }
  if (min_participants < 0 || max_participants < 0 ||
      (max_participants > 0 && max_participants < min_participants)) {
    return absl::InvalidArgumentError(absl::StrCat("coordinator: need 0 <= min_participants (",
                                                   min_participants, ") <= max_participants (",
                                                   max_participants, ") or max_participants = 0"));
  }
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
      arena_(std::make_unique<tbb::task_arena>(options.fold_threads)) {}

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
  const absl::Time now = clock.Now();
  FEDCL_RETURN_IF_ERROR(c->OpenRoundLocked(0, now, now + options.round_duration));
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
    }
  }
  for (const ClientRecord& client : state.clients) {
    FEDCL_RETURN_IF_ERROR(c->clients_.Put(client));
    c->active_clients_ += client.revoked ? 0 : 1;
    // Revocations since the last close are not persisted as such: forget every revoked client's
    // stored vector (FedVARP, MIFA) now, which is idempotent for those forgotten before.
    if (client.revoked) {
      for (PooledModule& module : c->modules_)
        module.aggregator->ForgetClient(client.id).IgnoreError();
    }
  }
  const absl::Time now = clock.Now();
  if (!state.open_round.has_value()) {
    FEDCL_RETURN_IF_ERROR(
        c->OpenRoundLocked(state.last_closed_round + 1, now, now + options.round_duration));
    return c;
  }
  // Resume the round in progress with its original deadline and the updates it had accepted.
  const RoundRecord& open = *state.open_round;
  c->round_ = open.round;
  c->opened_ = open.opened;
  c->deadline_ = open.deadline;
  c->state_ = RoundState::kOpen;
  for (PooledModule& module : c->modules_) module.aggregator->BeginRound(open.round);
  for (JournalEntry& entry : state.journal) {
    if (entry.round != open.round || c->accepted_.contains(entry.client)) continue;
    UpdateSubmission replay;
    replay.client = entry.client;
    replay.round = entry.round;
    replay.num_samples = entry.num_samples;
    replay.loss = entry.loss;
    size_t offset = 0;
    for (const std::string& name : entry.module_names) {
      PooledModule* module = c->FindModuleLocked(name);
      if (module == nullptr) {
        return absl::DataLossError(absl::StrCat("journal of round ", open.round, " names module '",
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
    FEDCL_ASSIGN_OR_RETURN(std::vector<double> weights,
                           c->DeltaWeightsLocked(replay, entry.weight));
    FEDCL_RETURN_IF_ERROR(FoldAll(replay, weights, c->AggregatorsForLocked(replay)));
    c->CountContributionLocked(replay);
    c->accepted_[entry.client] = entry.weight;
    c->round_samples_ += entry.num_samples;
    c->round_loss_sum_ += entry.loss * entry.num_samples;
    c->state_ = RoundState::kCollecting;
  }
  if (now >= c->deadline_ &&
      static_cast<int64_t>(c->accepted_.size()) >= options.min_participants) {
    FEDCL_RETURN_IF_ERROR(c->CloseRoundLocked());
  }
  return c;
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
    PooledModule module;
    module.spec = std::move(stored.spec);
    module.version = stored.version;
    module.aggregator = ModuleAggregator::Create(AggregatorOptionsFor(module.spec.role),
                                                 stored.values.num_values(), arena_.get());
    stored.values.DropGradients();  // the pool only keeps values
    module.values = std::make_shared<const nn::ParameterSet>(std::move(stored.values));
    modules_.push_back(std::move(module));
  }
  return absl::OkStatus();
}

absl::Status Coordinator::OpenRoundLocked(int64_t round, absl::Time opened, absl::Time deadline) {
  round_ = round;
  opened_ = opened;
  deadline_ = deadline;
  state_ = RoundState::kOpen;
  accepted_.clear();
  round_samples_ = 0;
  round_loss_sum_ = 0.0;
  for (PooledModule& module : modules_) {
    module.participants = 0;
    module.contributors.clear();
    module.aggregator->BeginRound(round);
  }
  if (store_ != nullptr) return store_->RoundOpened({round, opened, deadline});
  return absl::OkStatus();
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
  switch (options_.aggregator.kind) {
    case AggregatorKind::kAdaptive:
      return FedAuWeightAt(client.fedau, round, options_.aggregator.fedau_cutoff);
    case AggregatorKind::kKnownProb: {
      auto it = options_.participation_probability.find(client.id);
      return it == options_.participation_probability.end() ? 0.0 : 1.0 / it->second;
    }
    default:
      return 1.0;
  }
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
    ModuleInfo info{module.spec, module.version, module.values->num_values(), true,
                    module.descriptor != nullptr};
    for (const ModuleVersion& h : held) {
      if (h.name == module.spec.name && h.version == module.version) info.download = false;
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
    if (module.version != version) {
      return absl::NotFoundError(
          absl::StrCat("module '", name, "' is at version ", module.version, ", not ", version));
    }
    return ModuleSnapshot{module.spec, module.version, module.values, module.descriptor};
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

absl::Status Coordinator::ValidateAgainstPool(const UpdateSubmission& update) const {
  if (update.modules.empty()) return absl::InvalidArgumentError("the update has no modules");
  for (size_t i = 0; i < update.modules.size(); ++i) {
    const ModuleDelta& delta = update.modules[i];
    for (size_t j = 0; j < i; ++j) {
      if (update.modules[j].name == delta.name) {
        return absl::InvalidArgumentError(
            absl::StrCat("module '", delta.name, "' appears twice in the update"));
      }
    }
    const PooledModule* module = nullptr;
    for (const PooledModule& m : modules_) {
      if (m.spec.name == delta.name) module = &m;
    }
    if (module == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no module named '", delta.name, "'"));
    }
    if (delta.base_version != module->version) {
      return absl::FailedPreconditionError(absl::StrCat(
          "module '", delta.name, "' is at version ", module->version,
          "; the update was trained from version ", delta.base_version, ": download it again"));
    }
    FEDCL_RETURN_IF_ERROR(ValidateModuleDelta(delta, *module->values));
  }
  return absl::OkStatus();
}

// Under the lock: who may submit what, and with which weight. Marks the client in flight.
absl::StatusOr<Coordinator::Admission> Coordinator::AdmitLocked(const UpdateSubmission& update) {
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  const std::optional<ClientRecord> record = clients_.Find(update.client);
  if (!record.has_value())
    return absl::NotFoundError(absl::StrCat("unknown client ", update.client));
  if (record->revoked) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", update.client, " left permanently"));
  }
  if (update.round < round_) {
    return absl::AbortedError(
        absl::StrCat("round ", update.round, " has closed; the current round is ", round_));
  }
  if (update.round > round_) {
    return absl::OutOfRangeError(
        absl::StrCat("round ", update.round, " has not opened; the current round is ", round_));
  }
  if (state_ == RoundState::kClosing) {
    return absl::AbortedError(absl::StrCat("round ", round_, " is closing"));
  }
  if (in_flight_.contains(update.client)) {
    return absl::UnavailableError(absl::StrCat("an update of client ", update.client, " for round ",
                                               round_, " is being processed"));
  }
  FEDCL_RETURN_IF_ERROR(ValidateAgainstPool(update));
  const double weight = WeightLocked(*record, round_);
  if (!(weight > 0.0)) {
    return absl::FailedPreconditionError(
        absl::StrCat("no participation probability is configured for client ", update.client));
  }
  FEDCL_ASSIGN_OR_RETURN(std::vector<double> weights, DeltaWeightsLocked(update, weight));
  in_flight_.insert(update.client);
  return Admission{weight, std::move(weights), AggregatorsForLocked(update)};
}

std::vector<ModuleAggregator*> Coordinator::AggregatorsForLocked(const UpdateSubmission& update) {
  std::vector<ModuleAggregator*> aggregators;
  for (const ModuleDelta& delta : update.modules) {
    aggregators.push_back(FindModuleLocked(delta.name)->aggregator.get());
  }
  return aggregators;
}

absl::Status Coordinator::FoldAll(const UpdateSubmission& update,
                                  const std::vector<double>& weights,
                                  const std::vector<ModuleAggregator*>& aggregators) {
  for (size_t i = 0; i < update.modules.size(); ++i) {
    FEDCL_RETURN_IF_ERROR(
        aggregators[i]->Fold(update.client, update.modules[i].values, weights[i]));
  }
  return absl::OkStatus();
}

absl::StatusOr<SubmitResult> Coordinator::Submit(const UpdateSubmission& update) {
  SubmitResult result;
  result.round = update.round;
  Admission admission;
  {
    absl::MutexLock lock(&mu_);
    auto accepted = accepted_.find(update.client);
    if (update.round == round_ && accepted != accepted_.end()) {
      result.duplicate = true;
      result.weight = accepted->second;
      return result;
    }
    FEDCL_ASSIGN_OR_RETURN(admission, AdmitLocked(update));
  }
  const double weight = admission.weight;
  // Outside the lock: values, the norm bound, the journal and the fold, which may be slow. One
  // pass over the values gives the norm and, through it, whether every value is finite.
  const double squared_norm = SquaredNorm(update);
  absl::Status status = std::isfinite(squared_norm) ? absl::OkStatus() : FindNonFinite(update);
  if (status.ok() && options_.max_update_norm > 0.0) {
    const double norm = std::sqrt(squared_norm);
    if (norm > options_.max_update_norm) {
      if (options_.norm_policy == NormPolicy::kReject) {
        status = absl::InvalidArgumentError(
            absl::StrCat("update norm ", norm, " exceeds the bound ", options_.max_update_norm));
      } else {
        const float scale = static_cast<float>(options_.max_update_norm / norm);
        for (const ModuleDelta& delta : update.modules) {
          for (float& v : delta.values) v *= scale;
        }
        result.clipped = true;
      }
    }
  }
  if (status.ok() && store_ != nullptr && store_->journals()) {
    JournalEntry entry;
    entry.round = update.round;
    entry.client = update.client;
    entry.weight = weight;
    entry.clipped = result.clipped;
    entry.num_samples = update.num_samples;
    entry.local_steps = update.local_steps;
    entry.loss = update.loss;
    for (const ModuleDelta& delta : update.modules) {
      entry.module_names.push_back(delta.name);
      entry.views.push_back(delta.values);  // no copy: the store reads them before returning
    }
    status = store_->JournalUpdate(entry);  // thread-safe by contract; durable on return
  }
  // A journaled update is folded: a fold error here is a bug (the data was validated).
  if (status.ok()) FEDCL_CHECK_OK(FoldAll(update, admission.weights, admission.aggregators));

  absl::MutexLock lock(&mu_);
  in_flight_.erase(update.client);
  if (!status.ok()) return status;
  accepted_[update.client] = weight;
  CountContributionLocked(update);
  round_samples_ += update.num_samples;
  round_loss_sum_ += update.loss * update.num_samples;
  if (state_ == RoundState::kOpen) state_ = RoundState::kCollecting;
  result.weight = weight;
  if (options_.max_participants > 0 &&
      static_cast<int64_t>(accepted_.size()) >= options_.max_participants &&
      state_ != RoundState::kClosing) {
    absl::Status closed = CloseRoundLocked();
    if (!closed.ok()) return closed;
  }
  return result;
}

absl::Status Coordinator::Tick() {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  const absl::Time now = clock_.Now();
  if (state_ == RoundState::kClosing || now < deadline_) return absl::OkStatus();
  if (static_cast<int64_t>(accepted_.size()) >= options_.min_participants) {
    return CloseRoundLocked();
  }
  // Too few updates: the round goes on for another period.
  deadline_ = now + options_.round_duration;
  if (store_ != nullptr) return store_->RoundOpened({round_, opened_, deadline_});
  return absl::OkStatus();
}

absl::Status Coordinator::CloseRound() {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  if (state_ == RoundState::kClosing) return absl::OkStatus();
  return CloseRoundLocked();
}

absl::Status Coordinator::CloseRoundLocked() {
  state_ = RoundState::kClosing;
  // Updates already admitted finish folding before the aggregate is taken.
  mu_.Await(absl::Condition(
      +[](absl::flat_hash_set<ClientId>* in_flight) { return in_flight->empty(); }, &in_flight_));
  const int64_t enrolled = EnrolledLocked();
  RoundClose close;
  close.closed_round = round_;
  close.participants = static_cast<int64_t>(accepted_.size());
  close.enrolled = enrolled;
  // New values go into copies (one per module, straight into the record the store gets); they
  // replace the published ones only once the store has them.
  std::vector<int64_t> versions;
  for (PooledModule& module : modules_) {
    close.modules.push_back({module.spec, module.version, *module.values});
    nn::ParameterSet* next = &close.modules.back().values;
    absl::Status finished = module.aggregator->FinishRound(
        module.participants, DivisorLocked(module, enrolled),
        absl::MakeSpan(next->flat_values().data(), next->num_values()));
    if (!finished.ok()) {
      failed_ = true;  // the accumulators are spent; only a restart (journal replay) recovers
      return finished;
    }
    // FedVARP and MIFA: a client that left permanently stops contributing its stored vector
    // (N no longer counts it). A no-op for the FedAU family and for clients with nothing stored.
    // Clients revoked in earlier rounds were forgotten at those rounds' close.
    for (ClientId id : revoked_since_close_) {
      if (clients_.IsRevoked(id)) {
        module.aggregator->ForgetClient(id).IgnoreError();
      }
    }
    versions.push_back(SameValues(*next, *module.values) ? module.version : round_ + 1);
    close.modules.back().version = versions.back();
    AggregatorMemory::mapped_type memory = module.aggregator->ExportMemory();
    if (!memory.empty()) close.aggregator_memory[module.spec.name] = std::move(memory);
  }
  // Only the participants' records change at a close, so only they are copied and stored: the
  // close costs O(participants), not O(N), which is what lets a population of a million clients
  // run rounds of a thousand.
  std::vector<double> weights;
  close.clients.reserve(accepted_.size());
  for (const auto& [id, weight] : accepted_) {
    std::optional<ClientRecord> found = clients_.Find(id);
    FEDCL_CHECK(found.has_value()) << "accepted client " << id << " is not registered";
    ClientRecord record = *found;
    // Rounds only move forward, so recording can only fail on a broken invariant.
    FEDCL_CHECK_OK(
        FedAuParticipate(record.fedau, round_, options_.aggregator.fedau_cutoff).status());
    ++record.participations;
    record.last_participation_round = round_;
    close.clients.push_back(record);
    weights.push_back(weight);
  }
  // The store expects ids in increasing order (a deterministic write order whatever the hash
  // map's).
  std::sort(close.clients.begin(), close.clients.end(),
            [](const ClientRecord& a, const ClientRecord& b) { return a.id < b.id; });
  close.pool_holders = PoolParticipationsLocked();
  if (store_ != nullptr) {
    absl::Status stored = store_->RoundClosed(close);
    if (!stored.ok()) {
      // Memory and disk would disagree from here on; refuse work until a restart replays the
      // journal from the last durable state.
      failed_ = true;
      return absl::Status(stored.code(),
                          absl::StrCat("closing round ", round_, ": ", stored.message()));
    }
  }
  // The records fit: FedAuParticipate advanced rounds that are below 2^31.
  for (const ClientRecord& record : close.clients) FEDCL_CHECK_OK(clients_.Put(record));
  for (const PoolHolder& holder : close.pool_holders) {
    // Computed from these very counters above, so recording cannot fail.
    FEDCL_CHECK_OK(registry_
                       ->RecordParticipation(holder.module_id, holder.client, round_,
                                             options_.aggregator.fedau_cutoff)
                       .status());
  }
  revoked_since_close_.clear();
  RoundReport report;
  report.round = round_;
  report.opened = opened_;
  report.closed = clock_.Now();
  report.participants = close.participants;
  report.enrolled = enrolled;
  report.samples = round_samples_;
  report.mean_loss = round_samples_ > 0 ? round_loss_sum_ / round_samples_ : 0.0;
  Summarize(weights, report.weight_min, report.weight_mean, report.weight_max);
  for (size_t i = 0; i < modules_.size(); ++i) {
    // The store is done with the record: its values become the published module.
    modules_[i].values =
        std::make_shared<const nn::ParameterSet>(std::move(close.modules[i].values));
    modules_[i].version = versions[i];
    report.modules.push_back({modules_[i].spec.name, versions[i]});
  }
  report.pool = PoolStatusLocked();  // before the next round clears the contributors
  report.pool_merges = registry_->merges();
  reports_.push_back(std::move(report));
  const absl::Time now = clock_.Now();
  absl::Status opened = OpenRoundLocked(round_ + 1, now, now + options_.round_duration);
  if (!opened.ok()) failed_ = true;
  return opened;
}

CoordinatorStatus Coordinator::Status() const {
  absl::MutexLock lock(&mu_);
  CoordinatorStatus status;
  status.round = round_;
  status.state = state_;
  status.deadline = deadline_;
  status.accepted = static_cast<int64_t>(accepted_.size());
  status.enrolled = EnrolledLocked();
  status.aggregator = std::string(AggregatorKindName(options_.aggregator.kind));
  for (const PooledModule& module : modules_)
    status.modules.push_back({module.spec.name, module.version});
  std::vector<double> weights;
  clients_.ForEach(0, clients_.size(), [&](const ClientRecord& record) {
    ClientStatus client{record, WeightLocked(record, round_)};
    if (!record.revoked) weights.push_back(client.current_weight);
    status.clients.push_back(client);
  });
  Summarize(weights, status.weight_min, status.weight_mean, status.weight_max);
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
