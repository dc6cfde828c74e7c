// Coordinator: the round policy's decisions and the close of a round (the contract is in
// coordinator.h).
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/fl/coordinator.h"

namespace fedcl::fl {
namespace {

bool SameValues(const nn::ParameterSet& a, const nn::ParameterSet& b) {
  return a.num_values() == b.num_values() &&
         std::memcmp(a.flat_values().data(), b.flat_values().data(),
                     sizeof(float) * a.num_values()) == 0;
}

}  // namespace

absl::Status Coordinator::OpenRoundLocked(int64_t round, absl::Time opened) {
  round_ = round;
  opened_ = opened;
  deadline_ = policy_->Open(round, opened);
  state_ = RoundState::kOpen;
  accepted_.clear();
  round_samples_ = 0;
  round_loss_sum_ = 0.0;
  round_staleness_sum_ = 0;
  round_staleness_max_ = 0;
  round_magnitude_.clear();
  for (PooledModule& module : modules_) {
    module.participants = 0;
    module.contributors.clear();
    module.aggregator->BeginRound(round);
  }
  if (store_ != nullptr) return store_->RoundOpened({round, opened, deadline_});
  return absl::OkStatus();
}

RoundProgress Coordinator::ProgressLocked() const {
  return {.round = round_,
          .opened = opened_,
          .deadline = deadline_,
          .accepted = static_cast<int64_t>(accepted_.size())};
}

absl::Status Coordinator::Tick() {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  if (state_ == RoundState::kClosing) return absl::OkStatus();
  const absl::Time now = clock_.Now();
  switch (policy_->OnTick(ProgressLocked(), now)) {
    case RoundPolicy::TickAction::kNothing:
      return absl::OkStatus();
    case RoundPolicy::TickAction::kClose:
      return CloseRoundLocked();
    case RoundPolicy::TickAction::kExtend:
      // Too few updates: the round goes on with a later deadline.
      deadline_ = policy_->Extend(ProgressLocked(), now);
      if (store_ != nullptr) return store_->RoundOpened({round_, opened_, deadline_});
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::StatusOr<Coordinator::ReportResult> Coordinator::Report(int reporter, int reporters,
                                                              int64_t round) {
  absl::MutexLock lock(&mu_);
  if (failed_) return absl::FailedPreconditionError("coordinator stopped after a storage failure");
  ReportResult result;
  if (state_ != RoundState::kClosing) {
    FEDCL_ASSIGN_OR_RETURN(const bool close,
                           policy_->Report(ProgressLocked(), reporter, reporters, round));
    if (close) {
      result.closed = true;
      result.close_status = CloseRoundLocked();
    }
  }
  result.round = round_;
  result.reported = policy_->reported();
  return result;
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
      if (clients_.IsRevoked(id)) ForgetStoredDeltaLocked(module, id);
    }
    // A rule that rebases its participants names their new base round + 1 (FedAWE), whether
    // or not the values moved.
    const bool rebased =
        module.aggregator->rule().trains_from_client_base() && module.participants > 0;
    versions.push_back(!rebased && SameValues(*next, *module.values) ? module.version : round_ + 1);
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
  SummarizeWeights(weights, report.weight_min, report.weight_mean, report.weight_max);
  if (close.participants > 0) {
    report.staleness_mean =
        static_cast<double>(round_staleness_sum_) / static_cast<double>(close.participants);
  }
  report.staleness_max = round_staleness_max_;
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
  absl::Status opened = OpenRoundLocked(round_ + 1, clock_.Now());
  if (!opened.ok()) failed_ = true;
  return opened;
}

}  // namespace fedcl::fl
