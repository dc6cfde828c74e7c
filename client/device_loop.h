// The device side of a federation as one loop: join, then ask for work, train, submit, repeat,
// surviving network faults, server restarts and its own restarts.
//
//   client::DeviceLoopOptions options;
//   options.server.target = "fedcl.example.org:50051";
//   options.server.tls_ca_file = "/etc/fedcl/ca.pem";
//   options.server.token = token;
//   options.client_id = 7;
//   options.state_dir = "/var/lib/fedcl-client";
//   options.data.num_partitions = 100;               // client 7 trains on partition 7
//   options.max_rounds = 20;
//   FEDCL_ASSIGN_OR_RETURN(auto loop, client::DeviceLoop::Create(options, {}));
//   FEDCL_RETURN_IF_ERROR(loop->Run());              // until 20 updates were acknowledged
//
// What Run does:
//   1. Join (idempotent; it re-attaches a known client) and check the server speaks fedcl.v1
//      and sends chunks that fit in server.max_message_bytes.
//   2. Get the backbone the server announces (ServerInfo.backbone_digest, hex SHA-256 of the
//      serialized ModelCheckpoint): from `backbone_checkpoint` if given (it must match: the
//      server's own backbone, e.g. another device's cache), else from <state_dir>/backbone.ckpt if
//      that matches, else by DownloadBackbone, cached there for next time.
//   3. Loop: GetWork with the module versions held.
//        ACTION_WAIT   sleep retry_after (clamped to [min_poll, max_poll]) and ask again.
//        ACTION_TRAIN  take part with probability p: the draw is
//                      base::Rng::ForStream(participation_seed, {client_id, round}).Bernoulli(p),
//                      so a test can predict it; when it says no, sleep until the round's
//                      deadline. A round the server extends (too few updates by its deadline) is
//                      drawn again, with key {client_id, round, k} for its k-th extension, so a
//                      federation whose devices all declined a round does not stall on it.
//                      Otherwise download the modules marked `download`, install them
//                      (fl::ClientModel::Install), train all the round's modules with
//                      fl::TrainLocally on the local data and TrainingStream{seed, client, round},
//                      save the update as pending, submit it; on acknowledgement record the round
//                      and clear the pending update. One log line per acknowledged round.
//
// Errors, by code (the server's meanings are in core/fl/coordinator.h):
//   UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, and the transient transport codes
//   CANCELLED, DATA_LOSS, UNKNOWN, INTERNAL: retry the call after an exponential backoff with
//   jitter (BackoffOptions), up to max_consecutive_failures if set.
//   ABORTED, OUT_OF_RANGE on submit: the round has closed (or not opened): drop the update
//   (counted), ask for work again.
//   FAILED_PRECONDITION on submit: the update was trained from a stale module version: drop it,
//   ask for work (which marks the modules to download again) and retrain. If the next work
//   needs no download the refusal was something else, and Run stops with it.
//   NOT_FOUND on GetWork or submit: the server forgot the client (its state was wiped): join
//   again and carry on. NOT_FOUND on a module download: the module moved on: ask for work again.
//   UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT and anything else: Run stops and returns
//   the error (a bug or a misconfiguration; retrying would only spin). An update refused with
//   INVALID_ARGUMENT is dropped first, so a restart does not send it again.
//
// Durability: the client state (client/client_state.h) is saved after joining, after installing
// modules, before submitting (the pending update) and after the answer. A restarted loop over the
// same state directory re-attaches with the same enrolment, installs the held modules without
// downloading them, and resubmits a pending update: acknowledged (perhaps as a duplicate) if its
// round is still open, dropped if the server answers ABORTED or OUT_OF_RANGE.
//
// Time comes from the injected clock; every wait goes through the injected sleep function, so a
// test can run the loop on a ManualClock with a sleep that advances it.
//
// Thread safety: Run on one thread; Stop and stats from any thread.
#ifndef FEDCL_CLIENT_DEVICE_LOOP_H_
#define FEDCL_CLIENT_DEVICE_LOOP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "client/client_state.h"
#include "client/federation_client.h"
#include "client/federation_transport.h"
#include "client/local_data.h"
#include "core/base/clock.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "core/base/random.h"
#include "core/data/dataset.h"
#include "core/fl/local_trainer.h"

namespace fedcl::v1 {
class ModelCheckpoint;
}  // namespace fedcl::v1

namespace fedcl::client {

struct DeviceLoopOptions {
  // The server and how to reach it (target, TLS, token, deadlines, limits). `server.target` is
  // required unless a transport is injected (DeviceEnvironment::transport).
  FederationClientOptions server;
  // This device's client id; the token must authenticate it.
  fl::ClientId client_id = 0;
  // Where the client state and the backbone cache live (created if missing). Required; one
  // directory per client id.
  std::string state_dir;
  // A local copy of the server's backbone (a ModelCheckpoint file); empty downloads it. A file
  // that is not the server's backbone (digest mismatch) stops Run with FailedPrecondition.
  std::string backbone_checkpoint;
  // The local data and its partition.
  LocalDataOptions data;
  // Probability p in (0, 1] of taking part in a round the server offers.
  double participation_probability = 1.0;
  // Seeds the participation draws (see the top of this file).
  uint64_t participation_seed = 2;
  // Run returns once this many updates were acknowledged in this run (0 = no limit).
  int max_rounds = 0;
  // Run returns after this much time on the injected clock (0 = no limit, >= 0).
  absl::Duration max_duration = absl::ZeroDuration();
  // Seeds local training: minibatches come from TrainingStream{seed, client_id, round}.
  uint64_t seed = 1;
  // Retries of transient failures.
  BackoffOptions backoff;
  // Bounds on the waits the server suggests (0 < min_poll <= max_poll).
  absl::Duration min_poll = absl::Milliseconds(100);
  absl::Duration max_poll = absl::Seconds(10);
  // Announced at Join.
  std::string software = "fedcl-client";

  // InvalidArgument naming the first bad field (the server options are checked when the
  // transport is built).
  absl::Status Validate() const;
};

// What a run did. Counters are for this run unless noted.
struct DeviceStats {
  int64_t participations = 0;     // updates acknowledged (duplicates included)
  int64_t duplicates = 0;         // acknowledged as already accepted
  int64_t rounds_trained = 0;     // local trainings completed
  int64_t rounds_skipped = 0;     // participation draws that said no
  int64_t updates_dropped = 0;    // round closed / not open / stale modules / refused
  int64_t resubmissions = 0;      // pending updates of an earlier run submitted again
  int64_t training_failures = 0;  // local training diverged; the round was left
  int64_t retries = 0;            // calls retried after a transient failure
  int64_t joins = 0;              // successful Join calls
  int64_t rejoins = 0;            // joins after the server did not know the client
  int64_t backbone_downloads = 0;
  int64_t module_downloads = 0;
  int64_t last_round = -1;           // the last round acknowledged, -1 if none
  double last_loss = 0.0;            // its training loss
  bool resumed = false;              // a state file was read at Create
  bool state_set_aside = false;      // a corrupt state file was set aside at Create
  int64_t enrolled_round = -1;       // as the server reported at the last Join
  int64_t total_participations = 0;  // over the device's life (from the state)
};

// Where the loop gets its environment. Every field has a working default.
struct DeviceEnvironment {
  base::FileSystem* fs = &base::FileSystem::Default();
  base::Clock* clock = &base::Clock::Real();
  base::LogSink* log = &base::LogSink::Stderr();
  // Waits for the given duration. Null: a real sleep that Stop interrupts.
  std::function<void(absl::Duration)> sleep;
  // Null: a FederationClient (gRPC) built from options.server.
  std::unique_ptr<FederationTransport> transport;
};

class DeviceLoop {
 public:
  // Validates the options, builds the transport, loads the local data and the client state
  // (setting a corrupt state file aside, see client_state.h). Nothing touches the network yet.
  // Errors: InvalidArgument for invalid options or data; those of LoadLocalData,
  // FederationClient::Create and ClientStateStore::Load.
  static absl::StatusOr<std::unique_ptr<DeviceLoop>> Create(const DeviceLoopOptions& options,
                                                            DeviceEnvironment environment);
  ~DeviceLoop();
  DeviceLoop(const DeviceLoop&) = delete;
  DeviceLoop& operator=(const DeviceLoop&) = delete;

  // Runs until max_rounds updates were acknowledged, max_duration passed or Stop was called
  // (OK), or a fatal error (see the top of this file). Call once.
  absl::Status Run();

  // Makes Run return soon: interrupts the default sleep and cancels calls in flight. A pending
  // update stays saved for the next run. Thread-safe; idempotent.
  void Stop();

  DeviceStats stats() const;

  // The state as last saved. Only while Run is not running.
  const ClientState& state() const { return state_; }

 private:
  DeviceLoop(const DeviceLoopOptions& options, DeviceEnvironment environment);

  absl::Status RunLoop();
  // Join (or join again), then make sure the model is the server's.
  absl::Status JoinServer();
  absl::Status PrepareModel();
  absl::StatusOr<std::unique_ptr<v1::ModelCheckpoint>> LoadBackbone();
  absl::Status CheckDataFitsModel() const;
  absl::Status RebuildReplica();
  absl::Status InstallModule(DownloadedModule module);
  absl::Status HandleTrain(const fl::WorkAssignment& work);
  absl::Status SubmitPending();
  absl::Status DropPending();
  absl::Status SaveState();
  // The participation draw for `round` after `extensions` extensions of its deadline.
  bool Participates(int64_t round, int extensions) const;

  // Calls `call` until it returns something other than a transient failure (see the top of
  // this file), sleeping a backoff between attempts; a halt (Stop, time limit) ends it early.
  template <typename Call>
  std::invoke_result_t<Call> Retry(absl::string_view what, Call&& call);
  bool ShouldHalt();
  absl::Status Halt();
  bool Finished();
  void Sleep(absl::Duration duration);
  absl::Duration ClampPoll(absl::Duration duration) const;
  void Log(base::LogLevel level, absl::string_view message);

  const DeviceLoopOptions options_;
  base::FileSystem& fs_;
  base::Clock& clock_;
  base::LogSink& log_;
  std::function<void(absl::Duration)> sleep_;
  std::unique_ptr<FederationTransport> transport_;
  ClientStateStore store_;
  ClientState state_;
  data::Dataset data_;
  Backoff backoff_;

  bool ran_ = false;
  bool halted_ = false;
  absl::Time run_deadline_ = absl::InfiniteFuture();
  std::optional<ServerInfo> server_;
  std::string loaded_digest_;  // of the backbone in backbone_
  std::unique_ptr<v1::ModelCheckpoint> backbone_;
  std::unique_ptr<fl::ClientModel> replica_;
  bool pending_from_earlier_run_ = false;
  // The round of the last participation draw, its deadline and how often it was extended.
  int64_t draw_round_ = -1;
  absl::Time draw_deadline_;
  int draw_extensions_ = 0;
  bool draw_logged_ = false;             // the skip of that draw was logged
  std::optional<absl::Status> refused_;  // a FAILED_PRECONDITION on submit, unexplained
  int rejoins_in_a_row_ = 0;

  mutable absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  DeviceStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_DEVICE_LOOP_H_
