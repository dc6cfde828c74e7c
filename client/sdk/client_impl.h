// fedcl::Client's implementation: persistence, the memory budget, threads and the public API
// around one cl::Learner and the device::DeviceSession that syncs it (core/device: the device's
// half of a round, shared with fedcl-client and the simulators). Not part of the installed
// headers.
//
// Files: client.cc (options, backbone, learner and session, stats), client_learning.cc (learn,
// predict, adapt, the budget), client_state.cc (restore and save), client_sync.cc (the server:
// joining, the backbone, the session's sync, background syncs).
//
// Locks: model_mu_ guards the learner, the session's state and the life counters (the session
// takes it itself, releasing it around network calls); sync_mu_ the background sync; stats_mu_
// the per-run counters and the sync progress. std::mutex rather than absl::Mutex: Debian's
// Abseil is not built for ThreadSanitizer, whose target runs these tests, and pthread mutexes
// are intercepted.
#ifndef FEDCL_CLIENT_SDK_CLIENT_IMPL_H_
#define FEDCL_CLIENT_SDK_CLIENT_IMPL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/sdk/worker_pool.h"
#include "core/base/filesystem.h"
#include "core/cl/learner.h"
#include "core/device/device_session.h"
#include "core/device/federation_port.h"
#include "fedcl/client.h"
#include "proto/device_state_store.h"
#include "proto/fedcl/v1/checkpoint.pb.h"
#include "proto/fedcl/v1/device_state.pb.h"

namespace fedcl {

// Where a Client gets its environment; tests inject an in-process port and file system.
struct ClientEnvironment {
  base::FileSystem* fs = nullptr;  // null: the real file system
  // Null: a gRPC port to options.server_address, built at Init.
  std::unique_ptr<device::FederationPort> transport;
};

class Client::Impl {
 public:
  Impl(const ClientOptions& options, ClientEnvironment environment);
  ~Impl();

  absl::Status Init();
  absl::Status LoadBackbone(const std::string& path);
  absl::StatusOr<LearnResult> Learn(absl::Span<const float> pixels,
                                    absl::Span<const int32_t> labels, const LearnOptions& options);
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
  // What the app's device conditions gate (client_conditions.cc): OK, or FailedPrecondition
  // naming the missing condition (and counted) when the options' requirements are not met.
  enum class Activity { kLearn, kSync };
  absl::Status CheckConditions(Activity activity);

  // A copy of the learner that computes part of a Predict batch (ClientOptions::threads). Its
  // shared modules are copied from the learner before every split prediction, its backbone when
  // adaptation changed the learner's; it has its own detector, fitted on the same data.
  struct Replica {
    std::unique_ptr<cl::Learner> learner;
    std::vector<nn::ParameterSet*> shared;  // its SharedModules(), in the learner's order
    nn::Matrix input;
    std::vector<cl::Prediction> predictions;
    uint64_t adapt_generation = 0;
  };
  // Forwards the session's messages to the app's log callback.
  class LogForwarder final : public base::LogSink {
   public:
    explicit LogForwarder(const LogCallback& callback) : callback_(callback) {}
    void Write(base::LogLevel level, absl::string_view message) override;

   private:
    const LogCallback& callback_;
  };

  // What a cancellable Learn call keeps to undo itself (client_learning.cc).
  struct LearnUndo {
    cl::Learner::Mark learner;
    device::DeviceSession::LearningMark session;
    int64_t learn_batches = 0, learned_samples = 0;
  };
  LearnUndo MarkLocked();
  // Back to `undo`; `saved`: the call wrote the state since, so it is written again.
  absl::Status RollBackLocked(const LearnUndo& undo, bool saved);

  // ---- Model and state (model_mu_ held) ----
  absl::Status LoadBackboneBytesLocked(const std::string& bytes, const std::string& source);
  absl::Status BuildLearnerLocked(const v1::ModelCheckpoint& checkpoint, const std::string& source);
  void RestoreLocked();
  // Whether `checkpoint` has the same backbone weights as the cached backbone file.
  absl::StatusOr<bool> SameBackboneAsCacheLocked(const v1::ModelCheckpoint& checkpoint);
  // Commits the uncommitted learning (unless `commit` is false: a rolled-back call's save, which
  // leaves the state as it was) and writes the state.
  absl::Status SaveLocked(bool commit = true);
  absl::Status CheckReadyLocked(absl::string_view what) const;
  // The checks of a batch are in two steps so that nothing reads the caller's buffer before
  // every check on the count has passed (the C API builds the spans from a count it cannot
  // verify, so a count beyond the buffer must be refused, by the budget, before a read):
  // CheckBatchShape reads no value (count > 0, pixels.size() == count · input_size);
  // CheckPixelsFinite reads them all.
  absl::Status CheckBatchShape(absl::Span<const float> pixels, int64_t count) const;
  absl::Status CheckPixelsFinite(absl::Span<const float> pixels) const;
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
  // Images per batch that fit beside what is held (0 if not one does).
  int64_t FittingImagesLocked(bool training) const;
  // ResourceExhausted if a batch of `count` needs more than the budget leaves (counted in
  // memory_refusals). Reads no pixel, and bounds `count` before multiplying it: any count, even
  // one near INT64_MAX, is refused without overflow.
  absl::Status CheckBudgetLocked(int64_t count, bool training, absl::string_view what);
  // Records that the layers now keep the working buffers of a batch of `count`: called once
  // every check of the batch has passed, so a refused batch leaves the estimate unchanged.
  void RetainWorkingLocked(int64_t count, bool training);
  void Log(LogLevel level, const std::string& message) const;

  // ---- Sync (client_sync.cc) ----
  // One sync with its stage reporting and counters.
  absl::StatusOr<SyncResult> RunSync();
  // Builds the gRPC port (it connects at the first call) unless one was injected. Called by
  // Init only, so transport_ never changes while a sync or CancelSync reads it.
  absl::Status CreateTransport();
  // Before a learner exists: join to learn the server's backbone, and download it.
  absl::Status EnsureBackboneFromServer(const device::JoinResult& joined);
  // The session's check of the server at every join: its model must be this device's.
  absl::Status CheckServer(const device::JoinResult& joined);
  void SetStage(SyncProgress::Stage stage, int64_t bytes_done, int64_t bytes_total);
  bool Cancelled() const;

  const ClientOptions options_;
  base::FileSystem& fs_;
  std::unique_ptr<device::FederationPort> transport_;
  LogForwarder log_sink_;

  mutable std::mutex model_mu_;
  proto::DeviceStateStore store_;
  std::optional<v1::DeviceState> stored_;  // read at Init, applied when the backbone loads
  std::unique_ptr<cl::Learner> learner_;
  std::unique_ptr<device::DeviceSession> session_;  // syncs learner_; made with it
  nn::ModelConfig config_;
  std::string backbone_digest_;
  // The app calls BeginTask itself, so a detected shift does not start a task (persisted).
  bool app_tasks_ = false;
  bool adapted_ = false;
  v1::DeviceState life_;                      // the life counters (fields 10–12)
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
  std::optional<device::ServerInfo> server_;
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
