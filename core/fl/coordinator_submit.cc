// Coordinator: admission, validation, journal and fold of an update (the contract is in
// coordinator.h).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/fl/coordinator.h"
#include "core/fl/update_validation.h"
#include "core/peft/class_statistics.h"

namespace fedcl::fl {

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
    // A synchronous round takes deltas of the version the client was given only (the current
    // one, or its own base under FedAWE); an asynchronous one any earlier version too (how late
    // is the policy's Admit, on the update's round).
    const int64_t expected = TrainingVersionLocked(*module, update.client);
    const bool stale_allowed = policy_->max_staleness() > 0 && delta.base_version >= 0 &&
                               delta.base_version < module->version;
    if (delta.base_version != expected && !stale_allowed) {
      return absl::FailedPreconditionError(
          expected == module->version
              ? absl::StrCat("module '", delta.name, "' is at version ", module->version,
                             "; the update was trained from version ", delta.base_version,
                             ": download it again")
              : absl::StrCat("module '", delta.name, "': client ", update.client,
                             " trains from its base, version ", expected,
                             "; the update was trained from version ", delta.base_version,
                             ": ask for work again"));
    }
    FEDCL_RETURN_IF_ERROR(ValidateModuleDelta(delta, *module->values));
    if (module->spec.role == ModuleRole::kClassStatistics) {
      const nn::Shape& sums = module->values->info(0).shape;  // [classes, dim], checked at Init
      if (absl::Status s = peft::CheckClassStatisticsDelta(delta.values, sums[0], sums[1]);
          !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("module '", delta.name, "': ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Coordinator::ReserveMagnitude(const UpdateSubmission& update,
                                           const std::vector<double>& weights,
                                           const std::vector<float>& largest,
                                           const std::vector<double>& scales) {
  std::vector<double> needs;
  for (size_t i = 0; i < update.modules.size(); ++i) {
    needs.push_back(weights[i] * largest[i] * scales[i]);
  }
  absl::MutexLock lock(&mu_);
  // Rules with client memory: each delta's peak to hold until the fold (the larger of the stored
  // one and the new one: until then the client's stored vector is the old one).
  std::vector<MemoryPeaks*> memories(update.modules.size(), nullptr);
  std::vector<double> held_peaks(update.modules.size(), 0.0);
  for (size_t i = 0; i < update.modules.size(); ++i) {
    const std::string& name = update.modules[i].name;
    const double held = round_magnitude_[name];
    if (held + needs[i] > kRoundMagnitudeBudget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "module '", name, "': the round's exact sum cannot take this update (",
          "weight x largest |value| = ", needs[i], " on top of ", held, " of ",
          kRoundMagnitudeBudget, "); a norm bound (max_update_norm) keeps updates in range"));
    }
    if (!FindModuleLocked(name)->aggregator->rule().stores_client_deltas()) continue;
    memories[i] = &memory_peaks_[name];
    const double stored = largest[i] * scales[i];  // the delta as it will be kept
    const double replaced = memories[i]->Of(update.client);
    held_peaks[i] = std::max(replaced, stored);
    const double total = memories[i]->total - replaced + held_peaks[i];
    if (total > kClientMemoryMagnitudeBudget) {
      return absl::InvalidArgumentError(absl::StrCat(
          "module '", name, "': the clients' stored deltas (",
          FindModuleLocked(name)->aggregator->rule().name(), ") cannot take this update (largest ",
          "|value| ", stored, "; the stored deltas' largest |value|s would sum to ", total,
          ", over ", kClientMemoryMagnitudeBudget,
          "); a norm bound (max_update_norm) keeps updates in range"));
    }
  }
  for (size_t i = 0; i < update.modules.size(); ++i) {
    round_magnitude_[update.modules[i].name] += needs[i];
    if (memories[i] != nullptr) memories[i]->Set(update.client, held_peaks[i]);
  }
  return absl::OkStatus();
}

void Coordinator::StoreMemoryPeaksLocked(const UpdateSubmission& update,
                                         const std::vector<float>& peaks) {
  for (size_t i = 0; i < update.modules.size(); ++i) {
    const std::string& name = update.modules[i].name;
    if (!FindModuleLocked(name)->aggregator->rule().stores_client_deltas()) continue;
    memory_peaks_[name].Set(update.client, peaks[i]);
  }
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
  FEDCL_RETURN_IF_ERROR(policy_->Admit(update.round, round_));
  if (state_ == RoundState::kClosing) {
    return absl::AbortedError(absl::StrCat("round ", round_, " is closing"));
  }
  if (in_flight_.contains(update.client)) {
    return absl::UnavailableError(absl::StrCat("an update of client ", update.client, " for round ",
                                               round_, " is being processed"));
  }
  // A buffer holds K updates (fedbuff), those still folding included: concurrent uploads must
  // not fill it past K while the K-th folds. The next one waits for the next buffer, which opens
  // when the updates in flight are folded; Unavailable, so that devices send it again.
  if (const int64_t k = policy_->buffer_size();
      k > 0 && static_cast<int64_t>(accepted_.size() + in_flight_.size()) >= k) {
    return absl::UnavailableError(absl::StrCat("buffer ", round_, " is full (", k,
                                               " updates, some still being folded); retry"));
  }
  FEDCL_RETURN_IF_ERROR(ValidateAgainstPool(update));
  const double weight = WeightLocked(*record, round_);
  if (!(weight > 0.0)) {
    return absl::FailedPreconditionError(
        absl::StrCat("no participation probability is configured for client ", update.client));
  }
  FEDCL_ASSIGN_OR_RETURN(std::vector<double> weights, DeltaWeightsLocked(update, weight));
  // An asynchronous policy discounts late updates (1 for synchronous ones). Submit scales the
  // values by it, as it does to clip: every rule then folds it, the unweighted ones and those
  // that store each client's last delta included, and the journal holds what was folded.
  const double staleness_weight = policy_->StalenessWeight(round_ - update.round);
  std::vector<bool> exact;
  for (const ModuleDelta& delta : update.modules)
    exact.push_back(FindModuleLocked(delta.name)->spec.role == ModuleRole::kClassStatistics);
  in_flight_.insert(update.client);
  return Admission{
      round_,          weight, staleness_weight, std::move(weights), AggregatorsForLocked(update),
      std::move(exact)};
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
    if (std::optional<SubmitResult> duplicate = DuplicateLocked(update); duplicate.has_value()) {
      return *duplicate;
    }
    FEDCL_ASSIGN_OR_RETURN(admission, AdmitLocked(update));
  }
  const double weight = admission.weight;
  // Outside the lock: values, the norm bound, the journal and the fold, which may be slow. One
  // pass over the values gives the norm, through it whether every value is finite, and each
  // delta's largest |value| (for ReserveMagnitude). Class statistics are not learning: they stay
  // out of the norm and are never scaled.
  std::vector<float> largest;
  const double squared_norm = SquaredNorm(update, &largest, &admission.exact);
  absl::Status status = std::isfinite(squared_norm) ? absl::OkStatus() : FindNonFinite(update);
  double scale = admission.staleness_weight;  // and the clipping factor, if any
  if (status.ok() && options_.max_update_norm > 0.0) {
    const double norm = std::sqrt(squared_norm);
    if (norm > options_.max_update_norm) {
      if (options_.norm_policy == NormPolicy::kReject) {
        status = absl::InvalidArgumentError(
            absl::StrCat("update norm ", norm, " exceeds the bound ", options_.max_update_norm));
      } else {
        scale *= options_.max_update_norm / norm;
        result.clipped = true;
      }
    }
  }
  std::vector<double> scales(update.modules.size(), scale);
  for (size_t i = 0; i < scales.size(); ++i)
    if (admission.exact[i]) scales[i] = 1.0;
  if (status.ok() && scale != 1.0) {
    const float factor = static_cast<float>(scale);
    for (size_t i = 0; i < update.modules.size(); ++i) {
      if (admission.exact[i]) continue;
      for (float& v : update.modules[i].values) v *= factor;
    }
  }
  if (status.ok()) status = ReserveMagnitude(update, admission.weights, largest, scales);
  if (status.ok() && store_ != nullptr && store_->journals()) {
    JournalEntry entry;
    entry.round = admission.round;
    if (update.round != admission.round) entry.base_round = update.round;
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
  std::vector<float> stored_peaks(largest.size());
  for (size_t i = 0; i < largest.size(); ++i)
    stored_peaks[i] = static_cast<float>(largest[i] * scales[i]);
  StoreMemoryPeaksLocked(update, stored_peaks);
  accepted_[update.client] = weight * admission.staleness_weight;
  CountContributionLocked(update);
  round_samples_ += update.num_samples;
  round_loss_sum_ += update.loss * update.num_samples;
  round_staleness_sum_ += admission.round - update.round;
  round_staleness_max_ = std::max(round_staleness_max_, admission.round - update.round);
  if (state_ == RoundState::kOpen) state_ = RoundState::kCollecting;
  result.weight = weight * admission.staleness_weight;
  if (state_ != RoundState::kClosing && policy_->CloseAfterAccept(ProgressLocked())) {
    FEDCL_RETURN_IF_ERROR(CloseRoundLocked());
  }
  return result;
}

// An update this coordinator has already counted: acknowledged again, whether its round is
// still open (it is among the accepted) or has closed since (the client's last participation is
// that round: the device lost the acknowledgement and replays the same update).
//
// Asynchronous rounds (max_staleness S > 0): an update trained for round r is accepted into the
// round open when it arrives, one of r .. r + S. So a replay of it is a duplicate when its client
// is among the open round's accepted, or when its last participation lies in [r, r + S]. Neither
// can be mistaken for a new update of a device that submits one update at a time: GetWork
// gives no work to a client already accepted in the open round, so a device's next update is
// trained for a round after every round its earlier updates were accepted into.
std::optional<SubmitResult> Coordinator::DuplicateLocked(const UpdateSubmission& update) const {
  SubmitResult result;
  result.round = update.round;
  result.duplicate = true;
  if (update.round > round_ || update.round < 0) return std::nullopt;
  const int64_t max_staleness = policy_->max_staleness();
  if (round_ - update.round <= max_staleness) {
    auto accepted = accepted_.find(update.client);
    if (accepted != accepted_.end()) {
      result.weight = accepted->second;
      return result;
    }
    if (update.round == round_) return std::nullopt;
  }
  const std::optional<ClientRecord> record = clients_.Find(update.client);
  if (!record.has_value() || record->revoked || record->participations == 0 ||
      record->last_participation_round < update.round ||
      record->last_participation_round - update.round > max_staleness) {
    return std::nullopt;
  }
  return result;  // the weight is not kept past the close: 0
}

}  // namespace fedcl::fl
