// The device's half of a round, written once: what the edge SDK, fedcl-client and the
// simulators' devices all run.
//
//   device::DeviceSession session(options, learner, {.port = &port, .mu = &model_mu});
//   FEDCL_ASSIGN_OR_RETURN(device::RoundWork work, session.Begin());   // work, downloads, re-base
//   if (work.train) {
//     ... learner.Learn(batch) ... then, under model_mu: session.AfterLearn(samples, loss);
//     FEDCL_RETURN_IF_ERROR(session.Commit());                      // under model_mu
//     FEDCL_ASSIGN_OR_RETURN(device::SubmitOutcome out, session.Submit(work.round));
//   }
//   // or, learning between syncs (the SDK): session.Sync() = Begin + Commit + Submit.
//
// Shared modules. The trainer's SharedModules() are the device's modules (cl::SessionTrainer).
// For each the session keeps three values:
//   base       the server's values at `version` (or the trainer's initial ones, version −1), plus
//              acknowledged learning and any queue record dropped for lack of room;
//   committed  base + every queued delta: what a restart restores;
//   live       the trainer's values: committed + learning not yet committed.
// Commit appends live − committed as a record (the offline queue, bounded by
// offline_queue_bytes: the oldest record is folded into base and dropped first, never the newest
// nor one in flight). Re-basing on server values S sets base = S and committed = S + the queued
// records, and moves live by the same amount, so queued and uncommitted learning carry over (a
// module with none lands on S exactly). Begin lists, downloads and re-bases what the server
// changed; a module the server lists that the trainer does not run is taken on through
// SessionTrainer::AdoptModule (the recipe method adopts the server's head, backbone or PET
// modules) or skipped.
//
// Submitting. Submit sends the queued learning of the modules the round lists, summed per module,
// keyed by (client, round). Delivery is exactly once across lost replies: before the call the
// session records the submission as in flight (round, the last record it covers, each module's
// base version) and saves; until a definitive answer it resubmits exactly that update for exactly
// that round (the server acknowledges a replay as a duplicate, also after the round closed), and
// only an acknowledgement folds the records into base. The error-code policy:
//   OK (also a duplicate)     the records are the server's: folded into base, dropped.
//   ABORTED, OUT_OF_RANGE     the round closed without this update (or had not opened): the
//                             learning is kept for a later round (Unsent::kKeep, the SDK and
//                             continual devices) or dropped (Unsent::kDrop, recipe devices, whose
//                             next round starts from the server's values as FedAvg does).
//   FAILED_PRECONDITION       a module moved on since Begin: as ABORTED; Sync re-bases and
//                             resubmits once in the same round.
//   NOT_FOUND                 the server forgot the client (its state was wiped): the session
//                             joins again and sends it once more; a second NOT_FOUND is returned
//                             with the submission in flight.
//   INVALID_ARGUMENT          the server will never take it: the learning is dropped, the error
//                             returned.
//   IsTransient (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED, DATA_LOSS,
//   UNKNOWN, INTERNAL)        the reply may be lost: the submission stays in flight, the error is
//                             returned, the next Begin or Submit resolves it first.
//   anything else (UNAUTHENTICATED, PERMISSION_DENIED, ...) is returned; nothing changes.
// Begin refuses nothing itself: its errors are the port's, and NOT_FOUND from GetWork rejoins once.
//
// Growth (methods whose trainer has ExpansionHooks, SEMA). After a Learn that grew an adapter, the
// adapter becomes a module at once (its learning is queued like any other's) with no server name;
// at the next Begin it is proposed to the server's pool, which founds a module with it or joins it
// to the module another device founded for the same shift (then re-based onto it at the download).
// A pool at capacity or a refused proposal leaves it on the device only. Its descriptor is
// attached to the pooled module once the growth has trained it. Pooled adapters other devices
// grew join the trainer's mixture with their descriptors, within its growth budget.
//
// Durability: environment.save (called with the mutex held) at every point where the state must
// survive a crash before going on: after Begin changed anything, before a submission (the in-flight
// record), and after its answer. The host persists ExportState() there.
//
// Threads: every method takes the environment's mutex (the one the host holds while the trainer
// learns or predicts) around the state and releases it around port calls, so a host may learn on
// one thread while another syncs. Begin, Submit and Sync must not run concurrently with each
// other. The *Locked methods expect the caller to hold the mutex already.
#ifndef FEDCL_CORE_DEVICE_DEVICE_SESSION_H_
#define FEDCL_CORE_DEVICE_DEVICE_SESSION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/log.h"
#include "core/cl/session_trainer.h"
#include "core/device/federation_port.h"
#include "core/device/session_state.h"

namespace fedcl::device {

struct SessionOptions {
  fl::ClientId client_id = 0;
  // Announced at Join, e.g. "fedcl-sdk 0.1.0".
  std::string software = "fedcl";
  // What becomes of learning the server did not take because its round closed or its modules
  // moved on (see the top of this file).
  enum class Unsent { kKeep, kDrop };
  Unsent unsent = Unsent::kKeep;
  // Bound on the queued learning in bytes (>= 0); the newest record always stays.
  int64_t offline_queue_bytes = int64_t{64} << 20;
};

struct SessionEnvironment {
  // The server; null = offline (Begin, Submit and Sync fail with FailedPrecondition).
  FederationPort* port = nullptr;
  // Guards the trainer and the session's state; required, must outlive the session.
  std::mutex* mu = nullptr;
  // Persists the state (the host calls ExportState); called with `mu` held. Null: nothing.
  std::function<absl::Status()> save;
  base::LogSink* log = &base::LogSink::Null();
  // True once the host wants the current Begin/Submit/Sync to stop (it then returns Cancelled).
  std::function<bool()> cancelled;
  // Reports the stage of a sync and its bytes (download or upload) so far and in all.
  enum class Stage { kConnecting, kDownloading, kSubmitting };
  std::function<void(Stage stage, int64_t done, int64_t total)> progress;
  // Called when Join succeeded (also a rejoin), before anything else is asked: a host that must
  // check the server (its model, its backbone) refuses it here. Called without `mu`.
  std::function<absl::Status(const JoinResult&)> on_join;
};

struct SubmitOutcome;

// What Begin found.
struct RoundWork {
  bool train = false;  // the server offers a round to take part in now
  int64_t round = -1;  // with train: the round
  // The round the server is at, also without train (a host that knows which round it expects
  // tells "already submitted" from "moved on").
  int64_t server_round = -1;
  absl::Time deadline;               // with train: its deadline
  fl::Recipe recipe;                 // with train: how to train (recipe devices)
  absl::Duration retry_after;        // without: when to ask again
  std::vector<std::string> modules;  // with train: the modules the round lists (server names)
  // With train: the host declined the round (Begin's `take_part`): nothing was downloaded.
  bool declined = false;
  int64_t bytes_downloaded = 0;
  int64_t modules_downloaded = 0;
  // A submission whose answer had been lost, resolved before anything else (its outcome).
  std::shared_ptr<const SubmitOutcome> resolved;
};

struct SubmitOutcome {
  enum class Kind {
    kAccepted,          // the server took it now
    kDuplicate,         // the server had it already (a lost reply, resolved)
    kRoundClosed,       // ABORTED / OUT_OF_RANGE: kept or dropped per Unsent
    kStale,             // FAILED_PRECONDITION: a module moved on; kept or dropped per Unsent
    kNothingToSubmit,   // no learning of the round's modules is queued
    kAlreadySubmitted,  // this round already has this device's update
  };
  Kind kind = Kind::kNothingToSubmit;
  int64_t round = -1;
  double weight = 0.0;  // the server's aggregation weight (0 for a duplicate of a closed round)
  int64_t bytes_uploaded = 0;
  int64_t samples = 0, batches = 0;
  double loss = 0.0;  // mean training loss over the submitted batches
};

// The SDK's sync in one call.
struct SyncResult {
  int64_t round = -1;
  bool submitted = false;     // this sync's update was acknowledged (duplicates included)
  bool round_closed = false;  // the round closed before the update arrived; it stays queued
  int64_t bytes_downloaded = 0, bytes_uploaded = 0;
  int64_t modules_downloaded = 0;
  absl::Duration retry_after;  // the server had no round to join now
};

class DeviceSession {
 public:
  // `trainer` and everything in `environment` must outlive the session. The session starts with
  // the trainer's SharedModules() at version −1 and an empty queue; RestoreState replaces that.
  DeviceSession(const SessionOptions& options, cl::SessionTrainer& trainer,
                SessionEnvironment environment);
  DeviceSession(const DeviceSession&) = delete;
  DeviceSession& operator=(const DeviceSession&) = delete;

  // ---- The server (take the mutex themselves; no lock across a port call) ----

  // Joins (idempotent) and checks the protocol; FailedPrecondition for another protocol.
  absl::StatusOr<JoinResult> Join();
  // Records a join the host made itself (to learn the server's backbone before the session
  // existed), running the environment's on_join check, so that Begin need not join again.
  absl::Status Joined(const JoinResult& joined);
  // Resolves a submission in flight, asks for work, proposes grown adapters and attaches their
  // descriptors, downloads what changed and re-bases. Saves when it changed anything.
  // `take_part` (optional) is asked, once a round is offered and before anything is downloaded,
  // whether the host takes part (a participation draw); if not, Begin returns the round
  // `declined`.
  absl::StatusOr<RoundWork> Begin(
      const std::function<bool(const fl::WorkAssignment&)>& take_part = nullptr);
  // Submits the queued learning for `round` (the round Begin offered). See the top of this file.
  // A submission for `round` whose answer was lost is resolved first; its acknowledgement is then
  // this call's outcome.
  absl::StatusOr<SubmitOutcome> Submit(int64_t round);
  // Begin, Commit, Submit; a stale module re-bases and resubmits once.
  absl::StatusOr<SyncResult> Sync();

  // ---- The learner's side (the caller holds the mutex) ----

  // After each Learn: counts the batch as uncommitted learning, and makes adapters the trainer
  // grew modules with pending proposals.
  void AfterLearnLocked(int64_t samples, double loss);
  // live − committed → a queue record; no-op when nothing was learned since the last one.
  absl::Status CommitLocked();
  // Undoes the learning since the last commit (a diverged step): live = committed.
  void DiscardUncommittedLocked();
  // The durable state, for the host to persist.
  SessionState ExportStateLocked() const;
  // Undoing a learning call (the SDK's cancelled Learn). A mark holds what learning can change on
  // the session's side: the durable state, the trainer's live values (learning not yet
  // committed) and the uncommitted counters. RollBackLearningLocked returns to it once the
  // trainer's own state was rolled back: it restores the state as RestoreStateLocked does (the
  // trainer's sets found again by name, so a SEMA mixture rebuilt by its restore is fine), then
  // the live values and counters. Only learning may happen between the two: a sync in between
  // would be undone too, so the host holds the mutex from the mark to the rollback.
  struct LearningMark {
    SessionState state;
    // By the trainer's set name: the live values, and the committed ones (kept as they are, not
    // recomputed from base + queue as a restore does, which could round otherwise).
    std::vector<std::pair<std::string, std::vector<float>>> live, committed;
    int64_t uncommitted_batches = 0, uncommitted_samples = 0;
    double uncommitted_loss_sum = 0.0;
  };
  LearningMark MarkLearningLocked() const;
  absl::Status RollBackLearningLocked(const LearningMark& mark);
  // Replaces the state with `state`, matching modules by the trainer's set names (adopting, via
  // the trainer, modules it does not run yet). Checks everything first: InvalidArgument naming
  // what does not fit, and nothing changes.
  absl::Status RestoreStateLocked(const SessionState& state);

  // ---- Reading (the caller holds the mutex) ----
  struct Counters {
    int64_t submissions = 0;      // acknowledged (duplicates not counted again), over its life
    int64_t duplicates = 0;       // acknowledgements of a replay
    int64_t rounds_closed = 0;    // submissions that found their round closed
    int64_t updates_dropped = 0;  // learning dropped (Unsent::kDrop, INVALID_ARGUMENT)
    int64_t records_dropped = 0;  // queue records dropped for lack of room
    int64_t rejoins = 0;
    int64_t proposals = 0;  // grown adapters the server took
    // Float32 bytes of the proposals and descriptors sent (beside the submissions' own bytes).
    int64_t growth_bytes_uploaded = 0;
    int64_t last_submitted_round = -1;
  };
  const Counters& CountersLocked() const { return counters_; }
  // Queued learning: records, their batches (uncommitted batches excluded).
  int64_t QueuedRecordsLocked() const { return static_cast<int64_t>(queue_.size()); }
  int64_t QueuedBatchesLocked() const;
  int64_t QueuedBytesLocked() const { return queue_bytes_; }
  int64_t UncommittedBatchesLocked() const { return uncommitted_.batches; }
  bool InFlightLocked() const { return in_flight_.has_value(); }
  // Bytes the session holds besides the trainer's (base and committed copies, the queue).
  int64_t HeldBytesLocked() const;
  const std::optional<JoinResult>& JoinedLocked() const { return joined_; }
  std::optional<int64_t> EnrolledRoundLocked() const { return enrolled_round_; }
  // Grown adapters not yet proposed.
  int64_t ProposalsPendingLocked() const { return static_cast<int64_t>(pending_.size()); }

  // Error feedback owed, by the module's server name (modules that owe nothing are left out):
  // for a host that keeps only this part of a device between sessions (the simulator's virtual
  // clients, whose sessions are fresh each round). Set ignores names the session does not hold
  // and residuals of another size.
  std::map<std::string, std::vector<float>> ResidualsLocked() const;
  void SetResidualsLocked(const std::map<std::string, std::vector<float>>& residuals);

 private:
  struct Module {
    nn::ParameterSet* live = nullptr;
    std::string server_name;  // the server's name (the set's unless the pool named it)
    bool on_server = true;    // false for a grown adapter the server has not taken
    int64_t version = -1;
    Eigen::VectorXf base, committed;
    peft::ModuleSpec spec;  // as the server described it (adopted modules)
    bool adopted = false;   // taken on through SessionTrainer::AdoptModule
    bool descriptor_pending = false;
    fl::CompressionSpec upload;  // as the server's last work asked
    // Error feedback: what compression has not yet delivered of the submitted deltas (empty:
    // nothing), added to the next delta of this module before it is compressed.
    Eigen::VectorXf residual;
  };
  struct Record {
    uint64_t sequence = 0;
    int64_t batches = 0, samples = 0;
    double loss_sum = 0.0;
    std::vector<Eigen::VectorXf> deltas;  // one per module, in modules_ order
    int64_t bytes() const;
  };

  // device_session.cc: the server side.
  absl::Status RejoinLocked(std::unique_lock<std::mutex>& lock);
  // Resends a submission in flight; its outcome, once answered, waits in resolved_ until the
  // host is told (the next Begin's RoundWork, or Submit of that round).
  absl::Status ResolveInFlightLocked(std::unique_lock<std::mutex>& lock);
  absl::StatusOr<fl::SubmitResult> SendLocked(std::unique_lock<std::mutex>& lock,
                                              const InFlightSubmission& in_flight,
                                              fl::LocalUpdate& update);
  absl::StatusOr<SubmitOutcome> SubmitLocked(std::unique_lock<std::mutex>& lock, int64_t round);
  absl::StatusOr<SubmitOutcome> AnswerLocked(const absl::StatusOr<fl::SubmitResult>& answer,
                                             const InFlightSubmission& in_flight,
                                             const fl::LocalUpdate& sent, SubmitOutcome outcome);
  absl::Status DownloadAll(std::unique_lock<std::mutex>& lock, const fl::WorkAssignment& work,
                           RoundWork& out);
  absl::Status ApplyDownloadLocked(DownloadedModule& module, RoundWork& out);
  absl::Status Cancelled() const;
  void Progress(SessionEnvironment::Stage stage, int64_t done, int64_t total) const;
  void Log(base::LogLevel level, const std::string& message) const;

  // device_session_queue.cc: modules, the queue and the in-flight update.
  Module* FindLocked(absl::string_view server_name);
  Module* FindByLiveLocked(const nn::ParameterSet* live);
  void AddModuleLocked(nn::ParameterSet* live, std::string server_name, int64_t version,
                       const Eigen::VectorXf& base, bool on_server);
  void RebaseLocked(Module& m, const nn::ParameterSet& values, int64_t version);
  void EnforceQueueBoundLocked();
  // The update of the records up to in_flight.last_sequence for in_flight's modules, each delta
  // compressed as in_flight says with its module's residual added; each delta's residual after
  // this update waits in next_residuals_ for its acknowledgement (SettleLocked). The same state
  // always builds the same update, so a resend after a lost reply repeats it exactly.
  fl::LocalUpdate BuildUpdateLocked(const InFlightSubmission& in_flight);
  // Ends the in-flight submission: an acknowledged one's records are folded into base.
  void SettleLocked(const InFlightSubmission& in_flight, bool acknowledged);
  void DropLearningLocked(uint64_t last_sequence);
  absl::Status SaveLocked();

  // device_session_growth.cc: SEMA's modules that appear while the device runs.
  void TakeGrowthLocked();
  bool ProposalPendingLocked(const Module& m);
  absl::Status InstallPooledExpertLocked(DownloadedModule& module);
  absl::Status ProposeGrownLocked(std::unique_lock<std::mutex>& lock, int64_t round, bool* taken);
  absl::Status AttachDescriptorsLocked(std::unique_lock<std::mutex>& lock);
  // Whether Begin downloads `info` (the module changed, or a pooled adapter's descriptor is now
  // to be had), and whether with its descriptor.
  bool WantsDownloadLocked(const fl::ModuleInfo& info, bool* with_descriptor);

  const SessionOptions options_;
  cl::SessionTrainer& trainer_;
  const SessionEnvironment env_;

  std::vector<Module> modules_;
  std::deque<Record> queue_;
  int64_t queue_bytes_ = 0;
  uint64_t next_sequence_ = 1;
  Record uncommitted_;  // counters of the learning since the last commit (deltas unused)
  std::optional<InFlightSubmission> in_flight_;
  // The outcome of a resolved in-flight submission the host was not told of yet.
  std::shared_ptr<const SubmitOutcome> resolved_;
  std::vector<cl::ModuleProposal> pending_;   // grown, not yet proposed
  std::set<std::string> not_installed_;       // pooled adapters the trainer does not run
  std::set<std::string> descriptor_refused_;  // pooled descriptors the trainer cannot use
  std::optional<JoinResult> joined_;          // this process's last Join
  std::optional<int64_t> enrolled_round_;     // as the server reported it (durable)
  Counters counters_;
  // Residuals after the update BuildUpdateLocked built last (parallel to its in-flight modules;
  // empty: unchanged), applied if the server acknowledges it.
  std::vector<Eigen::VectorXf> next_residuals_;
};

}  // namespace fedcl::device

#endif  // FEDCL_CORE_DEVICE_DEVICE_SESSION_H_
