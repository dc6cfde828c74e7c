// DeviceSession: the conversation with the server — join, work, downloads and re-basing, and the
// submission of queued learning, exactly once (the contract is in device_session.h). No lock is
// held across a port call.
#include "core/device/device_session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::device {

absl::Status DeviceSession::Cancelled() const {
  if (env_.cancelled && env_.cancelled()) return absl::CancelledError("the sync was cancelled");
  return absl::OkStatus();
}

void DeviceSession::Progress(SessionEnvironment::Stage stage, int64_t done, int64_t total) const {
  if (env_.progress) env_.progress(stage, done, total);
}

void DeviceSession::Log(base::LogLevel level, const std::string& message) const {
  env_.log->Write(level, message);
}

absl::StatusOr<JoinResult> DeviceSession::Join() {
  if (env_.port == nullptr) {
    return absl::FailedPreconditionError(
        "this device has no server: it learns and predicts offline only");
  }
  Progress(SessionEnvironment::Stage::kConnecting, 0, 0);
  FEDCL_ASSIGN_OR_RETURN(JoinResult joined, env_.port->Join(options_.client_id, options_.software));
  if (joined.server.protocol != kProtocol) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server speaks '", joined.server.protocol, "', not '", kProtocol, "'"));
  }
  if (env_.on_join) FEDCL_RETURN_IF_ERROR(env_.on_join(joined));
  std::lock_guard<std::mutex> lock(*env_.mu);
  joined_ = joined;
  enrolled_round_ = joined.enrolled_round;
  return joined;
}

absl::Status DeviceSession::Joined(const JoinResult& joined) {
  if (env_.on_join) FEDCL_RETURN_IF_ERROR(env_.on_join(joined));
  std::lock_guard<std::mutex> lock(*env_.mu);
  joined_ = joined;
  enrolled_round_ = joined.enrolled_round;
  return absl::OkStatus();
}

absl::Status DeviceSession::RejoinLocked(std::unique_lock<std::mutex>& lock) {
  Log(base::LogLevel::kWarning, "the server does not know this device; joining again");
  lock.unlock();
  absl::StatusOr<JoinResult> joined = Join();
  lock.lock();
  FEDCL_RETURN_IF_ERROR(joined.status());
  ++counters_.rejoins;
  return absl::OkStatus();
}

absl::StatusOr<RoundWork> DeviceSession::Begin(
    const std::function<bool(const fl::WorkAssignment&)>& take_part) {
  if (env_.port == nullptr) {
    return absl::FailedPreconditionError(
        "this device has no server: it learns and predicts offline only");
  }
  std::unique_lock<std::mutex> lock(*env_.mu);
  if (!joined_.has_value()) {
    lock.unlock();
    FEDCL_RETURN_IF_ERROR(Join().status());
    lock.lock();
  }
  FEDCL_RETURN_IF_ERROR(ResolveInFlightLocked(lock));
  bool rejoined = false;
  while (true) {
    FEDCL_RETURN_IF_ERROR(Cancelled());
    std::vector<fl::ModuleVersion> held;
    for (const Module& m : modules_)
      if (m.on_server && m.version >= 0) held.push_back({m.server_name, m.version});
    lock.unlock();
    absl::StatusOr<fl::WorkAssignment> work = env_.port->GetWork(options_.client_id, held);
    lock.lock();
    if (absl::IsNotFound(work.status()) && !rejoined) {
      rejoined = true;  // the server forgot the device (its state was wiped): join again
      FEDCL_RETURN_IF_ERROR(RejoinLocked(lock));
      continue;
    }
    FEDCL_RETURN_IF_ERROR(work.status());
    RoundWork out;
    out.resolved = std::move(resolved_);  // reported once, with the first work that follows
    out.server_round = work->round;
    if (work->action != fl::WorkAssignment::Action::kTrain) {
      out.retry_after = work->retry_after;
      return out;
    }
    out.train = true;
    out.round = work->round;
    out.deadline = work->deadline;
    out.recipe = work->recipe;
    for (const fl::ModuleInfo& info : work->modules) out.modules.push_back(info.spec.name);
    if (take_part) {
      lock.unlock();  // the host's callback runs without the session's lock
      const bool taking_part = take_part(*work);
      lock.lock();
      if (!taking_part) {
        out.declined = true;
        return out;
      }
    }
    if (trainer_.expansion() != nullptr) {
      // Adapters grown since the last sync go to the pool first, then the work is asked again:
      // it lists the new modules, and one that joined another device's module is re-based
      // onto it by the downloads.
      bool taken = false;
      FEDCL_RETURN_IF_ERROR(ProposeGrownLocked(lock, work->round, &taken));
      if (taken) {
        FEDCL_RETURN_IF_ERROR(SaveLocked());
        continue;
      }
      FEDCL_RETURN_IF_ERROR(AttachDescriptorsLocked(lock));
    }
    FEDCL_RETURN_IF_ERROR(DownloadAll(lock, *work, out));
    FEDCL_RETURN_IF_ERROR(SaveLocked());  // the re-based modules survive a crash mid-submit
    return out;
  }
}

absl::Status DeviceSession::DownloadAll(std::unique_lock<std::mutex>& lock,
                                        const fl::WorkAssignment& work, RoundWork& out) {
  int64_t total = 0;
  for (const fl::ModuleInfo& info : work.modules)
    if (info.download) total += info.num_values * int64_t{sizeof(float)};
  for (const fl::ModuleInfo& info : work.modules) {
    FEDCL_RETURN_IF_ERROR(Cancelled());
    bool with_descriptor = false;
    if (!WantsDownloadLocked(info, &with_descriptor)) continue;
    Progress(SessionEnvironment::Stage::kDownloading, out.bytes_downloaded, total);
    lock.unlock();
    absl::StatusOr<DownloadedModule> module = env_.port->DownloadModule(
        options_.client_id, info.spec.name, info.version, with_descriptor);
    lock.lock();
    FEDCL_RETURN_IF_ERROR(module.status());
    out.bytes_downloaded += module->values.num_values() * int64_t{sizeof(float)};
    FEDCL_RETURN_IF_ERROR(ApplyDownloadLocked(*module, out));
  }
  // How the server wants each module's next delta (modules installed just now included).
  for (const fl::ModuleInfo& info : work.modules) {
    if (Module* m = FindLocked(info.spec.name); m != nullptr) m->upload = info.upload;
  }
  Progress(SessionEnvironment::Stage::kDownloading, out.bytes_downloaded, total);
  return absl::OkStatus();
}

absl::Status DeviceSession::ApplyDownloadLocked(DownloadedModule& module, RoundWork& out) {
  Module* m = FindLocked(module.spec.name);
  if (m == nullptr && module.spec.role == fl::ModuleRole::kExpert &&
      trainer_.expansion() != nullptr) {
    ++out.modules_downloaded;
    return InstallPooledExpertLocked(module);  // an adapter another device grew
  }
  if (m == nullptr) {
    FEDCL_ASSIGN_OR_RETURN(nn::ParameterSet * set,
                           trainer_.AdoptModule(module.spec, module.values));
    if (set == nullptr) {
      not_installed_.insert(module.spec.name);
      Log(base::LogLevel::kDebug,
          absl::StrCat("the server's module '", module.spec.name, "' is not one this device runs"));
      return absl::OkStatus();
    }
    AddModuleLocked(set, module.spec.name, module.version, module.values.flat_values(), true);
    modules_.back().spec = module.spec;
    modules_.back().adopted = true;
    ++out.modules_downloaded;
    return absl::OkStatus();
  }
  if (absl::Status s = m->live->CheckSameLayout(module.values); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("the server's module '", module.spec.name,
                                                      "' does not fit this device's (", s.message(),
                                                      "): configure the server's modules for this "
                                                      "device's method"));
  }
  if (module.descriptor.has_value() && !m->descriptor_pending) {
    cl::ExpansionHooks* hooks = trainer_.expansion();
    const auto [block, index] = hooks->SlotOf(m->live);
    if (absl::Status s = hooks->AttachPooledDescriptor(block, index, *module.descriptor); !s.ok()) {
      descriptor_refused_.insert(module.spec.name);
      Log(base::LogLevel::kWarning, absl::StrCat("detection cannot use the descriptor of '",
                                                 module.spec.name, "': ", s.message()));
    }
  }
  // Fetched only for its descriptor: the device holds these values already.
  if (module.version == m->version) return absl::OkStatus();
  RebaseLocked(*m, module.values, module.version);
  ++out.modules_downloaded;
  return absl::OkStatus();
}

absl::StatusOr<SubmitOutcome> DeviceSession::Submit(int64_t round) {
  if (env_.port == nullptr) {
    return absl::FailedPreconditionError(
        "this device has no server: it learns and predicts offline only");
  }
  std::unique_lock<std::mutex> lock(*env_.mu);
  FEDCL_RETURN_IF_ERROR(ResolveInFlightLocked(lock));
  if (resolved_ != nullptr && resolved_->round == round &&
      (resolved_->kind == SubmitOutcome::Kind::kAccepted ||
       resolved_->kind == SubmitOutcome::Kind::kDuplicate)) {
    // The lost reply was this round's update: its acknowledgement is the answer. Learning done
    // since is submitted in a later round.
    const SubmitOutcome outcome = *resolved_;
    resolved_.reset();
    return outcome;
  }
  return SubmitLocked(lock, round);
}

absl::StatusOr<SubmitOutcome> DeviceSession::SubmitLocked(std::unique_lock<std::mutex>& lock,
                                                          int64_t round) {
  FEDCL_RETURN_IF_ERROR(CommitLocked());
  SubmitOutcome outcome;
  outcome.round = round;
  if (counters_.last_submitted_round == round) {
    outcome.kind = SubmitOutcome::Kind::kAlreadySubmitted;
    return outcome;
  }
  // The round's modules with queued learning, each at the version it was re-based on.
  InFlightSubmission in_flight;
  in_flight.round = round;
  if (queue_.empty()) return outcome;
  in_flight.last_sequence = queue_.back().sequence;
  for (size_t i = 0; i < modules_.size(); ++i) {
    const Module& m = modules_[i];
    if (!m.on_server || m.version < 0 || not_installed_.contains(m.server_name)) continue;
    bool learned = false;
    for (const Record& r : queue_) learned = learned || !r.deltas[i].isZero(0.0f);
    if (learned) {
      in_flight.modules.push_back({m.server_name, m.version});
      in_flight.compression.push_back(m.upload);
    }
  }
  // Only a compressed submission records its codecs (and a restart then resends it as it was).
  bool compresses = false;
  for (const fl::CompressionSpec& spec : in_flight.compression)
    compresses = compresses || spec.compresses();
  if (!compresses) in_flight.compression.clear();
  if (in_flight.modules.empty()) return outcome;  // nothing learned since the last submission
  fl::LocalUpdate update = BuildUpdateLocked(in_flight);
  in_flight_ = in_flight;
  FEDCL_RETURN_IF_ERROR(SaveLocked());  // in flight before it leaves: a lost reply is resolved
  absl::StatusOr<fl::SubmitResult> answer = SendLocked(lock, in_flight, update);
  if (absl::IsNotFound(answer.status())) {
    // The server forgot the device (its state was wiped): join again and send it once more.
    FEDCL_RETURN_IF_ERROR(RejoinLocked(lock));
    answer = SendLocked(lock, in_flight, update);
  }
  return AnswerLocked(answer, in_flight, update, outcome);
}

absl::StatusOr<fl::SubmitResult> DeviceSession::SendLocked(std::unique_lock<std::mutex>& lock,
                                                           const InFlightSubmission& in_flight,
                                                           fl::LocalUpdate& update) {
  int64_t upload = 0;
  for (const fl::ModuleUpdate& mu : update.modules) upload += mu.upload_bytes();
  Progress(SessionEnvironment::Stage::kSubmitting, 0, upload);
  const int64_t chunk = joined_.has_value() && joined_->server.chunk_bytes > 0
                            ? joined_->server.chunk_bytes
                            : int64_t{1} << 20;
  lock.unlock();
  absl::StatusOr<fl::SubmitResult> answer =
      env_.port->SubmitUpdate(options_.client_id, in_flight.round, update, chunk);
  lock.lock();
  if (answer.ok()) Progress(SessionEnvironment::Stage::kSubmitting, upload, upload);
  return answer;
}

absl::StatusOr<SubmitOutcome> DeviceSession::AnswerLocked(
    const absl::StatusOr<fl::SubmitResult>& answer, const InFlightSubmission& in_flight,
    const fl::LocalUpdate& sent, SubmitOutcome outcome) {
  for (const fl::ModuleUpdate& mu : sent.modules) outcome.bytes_uploaded += mu.upload_bytes();
  outcome.samples = sent.num_samples;
  outcome.batches = sent.local_steps;
  outcome.loss = sent.loss;
  const bool keep = options_.unsent == SessionOptions::Unsent::kKeep;
  if (answer.ok()) {
    outcome.kind =
        answer->duplicate ? SubmitOutcome::Kind::kDuplicate : SubmitOutcome::Kind::kAccepted;
    outcome.weight = answer->weight;
    SettleLocked(in_flight, /*acknowledged=*/true);
    ++counters_.submissions;
    counters_.duplicates += answer->duplicate ? 1 : 0;
    counters_.last_submitted_round = in_flight.round;
    FEDCL_RETURN_IF_ERROR(SaveLocked());
    return outcome;
  }
  const absl::Status& status = answer.status();
  if (absl::IsAborted(status) || absl::IsOutOfRange(status) || absl::IsFailedPrecondition(status)) {
    // The server did not take it: the round closed (or had not opened), or a module moved on.
    outcome.kind = absl::IsFailedPrecondition(status) ? SubmitOutcome::Kind::kStale
                                                      : SubmitOutcome::Kind::kRoundClosed;
    SettleLocked(in_flight, /*acknowledged=*/false);
    if (!keep) DropLearningLocked(in_flight.last_sequence);
    counters_.rounds_closed += outcome.kind == SubmitOutcome::Kind::kRoundClosed ? 1 : 0;
    Log(base::LogLevel::kInfo,
        absl::StrCat("round ", in_flight.round,
                     ": the server did not take "
                     "the update (",
                     status.message(), "); its learning is ", keep ? "kept" : "dropped"));
    FEDCL_RETURN_IF_ERROR(SaveLocked());
    return outcome;
  }
  if (absl::IsInvalidArgument(status)) {
    // The server will never take this update: do not send it again, after a restart either.
    SettleLocked(in_flight, /*acknowledged=*/false);
    DropLearningLocked(in_flight.last_sequence);
    Log(base::LogLevel::kError, absl::StrCat("the server refused the update for round ",
                                             in_flight.round, ": ", status.message()));
    FEDCL_RETURN_IF_ERROR(SaveLocked());
    return status;
  }
  // Transient or unknown: it stays in flight, resolved by the next Begin or Submit.
  return status;
}

absl::Status DeviceSession::ResolveInFlightLocked(std::unique_lock<std::mutex>& lock) {
  if (!in_flight_.has_value()) return absl::OkStatus();
  const InFlightSubmission in_flight = *in_flight_;
  Log(base::LogLevel::kInfo,
      absl::StrCat("round ", in_flight.round, ": resubmitting the update whose answer was lost"));
  fl::LocalUpdate update = BuildUpdateLocked(in_flight);
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<fl::SubmitResult> answer = SendLocked(lock, in_flight, update);
    if (absl::IsNotFound(answer.status()) && attempt == 0) {
      FEDCL_RETURN_IF_ERROR(RejoinLocked(lock));  // the server was wiped: the update waits
      continue;
    }
    SubmitOutcome outcome;
    outcome.round = in_flight.round;
    FEDCL_ASSIGN_OR_RETURN(outcome, AnswerLocked(answer, in_flight, update, outcome));
    resolved_ = std::make_shared<const SubmitOutcome>(outcome);
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::StatusOr<SyncResult> DeviceSession::Sync() {
  SyncResult result;
  for (int attempt = 0; attempt < 2; ++attempt) {
    FEDCL_ASSIGN_OR_RETURN(RoundWork work, Begin());
    if (work.resolved != nullptr && (work.resolved->kind == SubmitOutcome::Kind::kAccepted ||
                                     work.resolved->kind == SubmitOutcome::Kind::kDuplicate)) {
      result.submitted = true;  // the update whose reply was lost is the server's now
      result.bytes_uploaded += work.resolved->bytes_uploaded;
    }
    result.bytes_downloaded += work.bytes_downloaded;
    result.modules_downloaded += work.modules_downloaded;
    if (!work.train) {
      result.retry_after = work.retry_after;
      return result;
    }
    result.round = work.round;
    FEDCL_ASSIGN_OR_RETURN(SubmitOutcome outcome, Submit(work.round));
    result.bytes_uploaded += outcome.bytes_uploaded;
    switch (outcome.kind) {
      case SubmitOutcome::Kind::kAccepted:
      case SubmitOutcome::Kind::kDuplicate:
        result.submitted = true;
        return result;
      case SubmitOutcome::Kind::kRoundClosed:
        result.round_closed = true;
        return result;
      case SubmitOutcome::Kind::kStale:
        continue;  // a module moved on between the work and the submission: re-base, resubmit
      case SubmitOutcome::Kind::kNothingToSubmit:
      case SubmitOutcome::Kind::kAlreadySubmitted:
        return result;
    }
  }
  return result;
}

}  // namespace fedcl::device
