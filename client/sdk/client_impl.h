// fedcl::Client's implementation, shared by client.cc (model, learning, state) and
// client_sync.cc (the server). Not part of the installed headers.
//
// The device's shared modules are the learner's SharedModules() that the method trains ("head",
// "adapter"). For each the SDK keeps three values:
//   base       the server's values at `version` (or the learner's initial ones, version −1), plus
//              any queue record dropped for lack of room;
//   committed  base + every queued delta: what a restart restores;
//   live       the learner's values: committed + learning not yet committed.
// Commit appends live − committed as a record. Re-basing on server values S at version v sets
// base = S and moves committed and live by the same S − base, so queued and uncommitted learning
// carry over. An acknowledged submission folds the submitted records into base.
//
// Files: client.cc (options, backbone, learner, stats), client_learning.cc (learn, predict,
// adapt, the budget), client_state.cc (restore, commit, save), client_sync.cc (the server).
//
// Locks: model_mu_ guards the learner, the modules, the queue and the life counters; sync_mu_
// the background sync; stats_mu_ the per-run counters and the sync progress. Network calls are
// made holding none of them. std::mutex rather than absl::Mutex: Debian's Abseil is not built
// for ThreadSanitizer, whose target runs these tests, and pthread mutexes are intercepted.
#ifndef FEDCL_CLIENT_SDK_CLIENT_IMPL_H_
#define FEDCL_CLIENT_SDK_CLIENT_IMPL_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/federation_transport.h"
#include "client/sdk/device_state_store.h"
#include "client/sdk/worker_pool.h"
#include "core/base/filesystem.h"
#include "core/cl/learner.h"
#include "fedcl/client.h"
#include "proto/fedcl/v1/checkpoint.pb.h"

namespace fedcl {
namespace sdk {

// Codes after which the same call may succeed later; the device keeps its learning queued.
inline bool IsTransient(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s) ||
         absl::IsCancelled(s);
}

}  // namespace sdk

// Where a Client gets its environment; tests inject an in-process transport and file system.
struct ClientEnvironment {
  base::FileSystem* fs = nullptr;  // null: the real file system
  // Null: a gRPC FederationClient to options.server_address, built at the first sync.
  std::unique_ptr<client::FederationTransport> transport;
};

class Client::Impl {
 public:
  Impl(const ClientOptions& options, ClientEnvironment environment);
  ~Impl();

  absl::Status Init();
  absl::Status LoadBackbone(const std::string& path);
  absl::StatusOr<LearnResult> Learn(absl::Span<const float> pixels,
                                    absl::Span<const int32_t> labels);
  absl::Status Predict(absl::Span<const float> pixels, absl::Span<Prediction> out);
  absl::StatusOr<AdaptResult> Adapt(absl::Span<const float> pixels);
  absl::Status FitDetector(absl::Span<const float> pixels, absl::Span<const int32_t> labels);
  absl::Status BeginTask(absl::Span<const int32_t> classes);
  absl::StatusOr<SyncResult> Sync();
  absl::Status StartSync(std::function<void(const SyncProgress&)> on_progress);
  SyncProgress SyncStatus() const;
  absl::StatusOr<SyncResult> WaitSync();
  void CancelSync();
  absl::Status Save();
  ClientStats Stats() const;
  int64_t input_size() const;
  int num_classes() const;

 private:
  struct Module {
    nn::ParameterSet* live = nullptr;  // the learner's set
    // The server's name for it: the set's, or the pool's for a SEMA adapter ("block2/m3").
    std::string server_name;
    // False for an adapter this device grew that the server has not taken: its proposal is
    // pending, or was refused (it then stays on the device).
    bool on_server = true;
    int64_t version = -1;
    Eigen::VectorXf base, committed;
    // An adapter this device grew whose descriptor has not reached the pool yet: it is attached
    // (AttachDescriptor) at the first sync after the growth has trained it.
    bool descriptor_pending = false;
  };
  // A copy of the learner that computes part of a Predict batch (ClientOptions::threads). Its
  // shared modules are copied from the learner before every split prediction, its backbone when
  // adaptation changed the learner's; it has its own detector, fitted on the same data.
  struct Replica {
    std::unique_ptr<cl::Learner> learner;
    std::vector<nn::ParameterSet*> shared;  // its SharedModules(), in modules_ order
    nn::Matrix input;
    std::vector<cl::Prediction> predictions;
    uint64_t adapt_generation = 0;
  };
  struct Record {
    uint64_t sequence = 0;
    int64_t batches = 0, samples = 0;
    double loss_sum = 0.0;
    std::vector<Eigen::VectorXf> deltas;  // one per module, in modules_ order
    int64_t bytes() const;
  };
  // What a submission carries: the records up to `last_sequence`, summed per module.
  struct Snapshot {
    uint64_t last_sequence = 0;
    int64_t batches = 0, samples = 0;
    double loss_sum = 0.0;
    std::vector<Eigen::VectorXf> sums;
  };

  // ---- Model and state (model_mu_ held) ----
  absl::Status LoadBackboneBytesLocked(const std::string& bytes, const std::string& source);
  absl::Status BuildLearnerLocked(const v1::ModelCheckpoint& checkpoint, const std::string& source);
  void RestoreLocked();
  // Whether `checkpoint` has the same backbone weights as the cached backbone file.
  absl::StatusOr<bool> SameBackboneAsCacheLocked(const v1::ModelCheckpoint& checkpoint);
  absl::Status CommitLocked();
  void EnforceQueueBoundLocked();
  absl::Status SaveLocked();
  absl::Status CheckReadyLocked(absl::string_view what) const;
  absl::Status CheckImages(absl::Span<const float> pixels, int64_t count) const;
  // Standardises `count` images into input_ (or `into`).
  void StageInput(absl::Span<const float> pixels, int64_t count);
  void StageInto(absl::Span<const float> pixels, int64_t count, nn::Matrix& into) const;
  // The learner built from `checkpoint` with this client's options.
  absl::StatusOr<std::unique_ptr<cl::Learner>> MakeLearnerLocked(
      const v1::ModelCheckpoint& checkpoint, const std::string& source) const;
  // Brings a replica up to the learner's modules (and backbone, after adaptation).
  absl::Status RefreshReplicaLocked(Replica& r);
  // Predicts `count` images starting at `start` on `parts` learners at once (the learner and
  // parts − 1 replicas) into scratch_ / the replicas' buffers, then into `out`.
  absl::Status PredictSplitLocked(absl::Span<const float> pixels, int64_t start, int64_t count,
                                  absl::Span<Prediction> out);
  int64_t HeldBytesLocked() const;
  // Working bytes of a batch of `count` images (its buffers and the staged input).
  int64_t BatchBytes(int64_t count, bool training) const;
  // ResourceExhausted if a batch of `count` needs more than the budget leaves.
  absl::Status CheckBudgetLocked(int64_t count, bool training, absl::string_view what);
  // By the server's name (FindModuleLocked), the learner's set or its name.
  Module* FindModuleLocked(absl::string_view server_name);
  Module* FindModuleByLiveLocked(const nn::ParameterSet* live);
  Module* FindModuleByLiveNameLocked(absl::string_view name);

  // ---- SEMA: modules that appear while the device runs (client_sema.cc) ----
  // Appends a module whose base and committed values are `base`; queued records get a zero
  // delta for it.
  void AddModuleLocked(nn::ParameterSet* live, std::string server_name, int64_t version,
                       const Eigen::VectorXf& base, bool on_server = true);
  // Whether `m` is a grown adapter whose proposal has not been made yet.
  bool ProposalPendingLocked(const Module& m);
  // After a Learn: adapters the learner grew become modules with pending proposals.
  void TakeGrowthLocked();
  // A pool adapter another device grew joins this device's mixture (unless its growth budget
  // refuses: it is then skipped from now on).
  absl::Status InstallPooledExpertLocked(client::DownloadedModule& module);
  // Proposes the pending adapters for `round`, releasing `lock` around each call; *taken when
  // the server took one (founded or joined a module: the next GetWork lists it).
  absl::Status ProposeGrownLocked(std::unique_lock<std::mutex>& lock, int64_t round, bool* taken);
  // Sends the pool the descriptors of grown adapters whose growth has ended. A refusal
  // (NotFound, InvalidArgument) drops one for good; anything else leaves it for the next sync,
  // and only an unreachable server fails the sync.
  absl::Status AttachDescriptorsLocked(std::unique_lock<std::mutex>& lock);
  // The learner's (block, index) of an expert module, or {-1, -1}.
  std::pair<int, int> ExpertSlotLocked(const Module& m);
  absl::Status SaveSemaLocked(v1::DeviceState& state) const;
  absl::Status RestoreSemaLocked(const v1::DeviceState& state);
  void Log(LogLevel level, const std::string& message) const;

  // ---- Sync (client_sync.cc) ----
  // One sync with its stage reporting and counters; SyncOnce is the exchange itself.
  absl::StatusOr<SyncResult> RunSync();
  absl::StatusOr<SyncResult> SyncOnce();
  // Builds the gRPC transport (it connects at the first call) unless one was injected. Called by
  // Init only, so transport_ never changes while a sync or CancelSync reads it.
  absl::Status CreateTransport();
  absl::Status JoinServer();
  absl::Status EnsureBackboneFromServer();
  void SetStage(SyncProgress::Stage stage, int64_t bytes_done, int64_t bytes_total);
  bool Cancelled() const;

  const ClientOptions options_;
  base::FileSystem& fs_;
  std::unique_ptr<client::FederationTransport> transport_;
  cl::ClMethod method_ = cl::ClMethod::kSequentialAdapter;

  mutable std::mutex model_mu_;
  sdk::DeviceStateStore store_;
  std::optional<v1::DeviceState> stored_;  // read at Init, applied when the backbone loads
  std::unique_ptr<cl::Learner> learner_;
  nn::ModelConfig config_;
  std::string backbone_digest_;
  std::vector<Module> modules_;
  std::vector<cl::ModuleProposal> pending_;  // SEMA: grown, not yet proposed
  std::set<std::string> not_installed_;      // SEMA: pool adapters the device does not run
  // SEMA: pool adapters whose descriptor this learner cannot use (layout, memory budget): it is
  // not downloaded again.
  std::set<std::string> descriptor_refused_;
  // SEMA: the app calls BeginTask itself, so a growth does not start a task (persisted).
  bool app_tasks_ = false;
  std::deque<Record> queue_;
  int64_t queue_bytes_ = 0;
  uint64_t next_sequence_ = 1;
  Record uncommitted_;  // counters of the learning since the last commit (deltas unused)
  bool adapted_ = false;
  std::optional<int64_t> enrolled_round_;
  v1::DeviceState life_;                      // the life counters (fields 10–16)
  std::vector<Replica> replicas_;             // threads − 1 of them
  std::unique_ptr<sdk::WorkerPool> workers_;  // threads − 1 of them
  uint64_t adapt_generation_ = 0;             // bumped whenever the learner's backbone changes
  // Working bytes of the largest call so far: the layers keep those buffers between calls.
  int64_t retained_working_bytes_ = 0;
  nn::Matrix input_;
  std::vector<cl::Prediction> scratch_;

  mutable std::mutex stats_mu_;
  ClientStats run_;  // the per-run counters and flags
  SyncProgress progress_;
  std::function<void(const SyncProgress&)> on_progress_;

  // The server as last joined (sync only; guarded by sync_running_ being exclusive).
  std::optional<client::ServerInfo> server_;
  std::mutex sync_mu_;
  bool sync_running_ = false;  // a Sync or background sync is in progress
  std::thread sync_thread_;
  std::optional<absl::StatusOr<SyncResult>> background_result_;
  bool background_started_ = false;
  std::atomic<bool> cancel_{false};
};

// Creates a client over an injected environment (tests).
absl::StatusOr<std::unique_ptr<Client>> CreateClientForTesting(const ClientOptions& options,
                                                               ClientEnvironment environment);

}  // namespace fedcl

#endif  // FEDCL_CLIENT_SDK_CLIENT_IMPL_H_
