// fedcl-client's device: one loop over a cl::Learner and the device::DeviceSession that syncs it
// (core/device, the device code the SDK and the simulators run too), surviving network faults,
// server restarts and its own restarts.
//
//   client::DeviceOptions options;
//   options.server.target = "fedcl.example.org:50051";
//   options.server.tls_ca_file = "/etc/fedcl/ca.pem";
//   options.server.token = token;
//   options.client_id = 7;
//   options.state_dir = "/var/lib/fedcl-client";
//   options.data.num_partitions = 100;               // client 7 trains on partition 7
//   options.max_rounds = 20;
//   FEDCL_ASSIGN_OR_RETURN(auto device, client::Device::Create(options, {}));
//   FEDCL_RETURN_IF_ERROR(device->Run());            // until 20 rounds were taken part in
//
// The learner is options.method: "recipe" (the default) trains what the server lists with the
// round's recipe (algorithms.md §1.4), a FedAU / FedAvg device; a continual method
// (sequential_adapter, linear_head, simple_cil, fed_simple_cil, lae, fedins, sema, sema_replay)
// learns the local data as a stream and may grow and share modules. Each cycle:
//   continual  learn `batches_per_sync` minibatches of the partition (reshuffled every pass,
//              scored before they are learned: prequential accuracy; contrast-inverted from batch
//              `shift_after` on), then Begin (work, downloads, re-base) and Submit. A server that
//              cannot be reached does not stop it: it learns on offline and tries again later.
//   recipe     Begin; in a round it takes part in — with probability p, drawn as
//              base::Rng::ForStream(participation_seed, {client_id, round}).Bernoulli(p), and for
//              the k-th extension of a round's deadline with key {client_id, round, k}, so a
//              federation whose devices all declined a round does not stall — train the recipe
//              on minibatches keyed by (seed, client_id, round) (device::TrainRecipeRound), then
//              Submit; otherwise wait for the deadline. One log line per acknowledged round:
//              "round R: S samples, loss L, weight W, duplicate yes|no".
// The session submits exactly once across lost replies (device_session.h); for recipe devices
// learning the server did not take is dropped (the next round starts from the server's values).
//
// Errors: calls that may succeed later (device::IsTransient) are retried after an exponential
// backoff with jitter (BackoffOptions), up to backoff.max_consecutive_failures if set; a module
// that moved on between work and submission (FAILED_PRECONDITION) is fetched again and the round
// retrained, but a FAILED_PRECONDITION not explained by a new version stops Run; UNAUTHENTICATED,
// PERMISSION_DENIED, INVALID_ARGUMENT and anything else stop Run with the error.
//
// Durability: the device state (proto/device_state_store.h, the SDK's format; an older
// fedcl-client's client_state is converted) is saved whenever the session says so and at the
// end. The backbone comes from `backbone_checkpoint` (it must be the server's: SHA-256 checked),
// else from <state_dir>/backbone.ckpt if it is the server's, else it is downloaded and cached.
// Downloads cut short keep their verified chunks in <state_dir>/downloads (unless
// server.partial_downloads_dir says otherwise): a restarted device resumes them.
//
// Time comes from the injected clock and every wait goes through the injected sleep function,
// so a test can run the loop on a ManualClock with a sleep that advances it.
//
// Thread safety: Run on one thread; Stop and stats from any thread.
#ifndef FEDCL_CLIENT_DEVICE_H_
#define FEDCL_CLIENT_DEVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "client/local_data.h"
#include "core/base/clock.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "core/cl/learner.h"
#include "core/data/dataset.h"
#include "core/device/device_session.h"
#include "proto/device_state_store.h"
#include "proto/grpc_port.h"

namespace fedcl::client {

struct DeviceOptions {
  // The server and how to reach it (target, TLS, token, deadlines, limits). `server.target` is
  // required unless a port is injected (DeviceEnvironment::port).
  proto::GrpcPortOptions server;
  fl::ClientId client_id = 0;
  // Where the device state and the backbone cache live (created if missing). Required; one
  // directory per client id.
  std::string state_dir;
  // A local copy of the server's backbone (a ModelCheckpoint file); empty downloads it.
  std::string backbone_checkpoint;
  LocalDataOptions data;
  // The learner (core/cl/methods/) and its knobs (a text proto; see the method's file).
  std::string method = "recipe";
  std::string method_options;
  float learning_rate = 0.05f;  // continual methods' SGD learning rate (> 0)
  // Bound on the bytes of the learner's modules that a growing method stays under (0 = none).
  int64_t module_memory_budget_bytes = 0;
  // Recipe devices: the probability p in (0, 1] of taking part in a round, and its seed.
  double participation_probability = 1.0;
  uint64_t participation_seed = 2;
  // Recipe devices: after a round's training, wait this long per trained sample (the injected
  // sleep), to stand in for a slower device in tests and demos of asynchronous rounds (>= 0).
  absl::Duration throttle_per_sample = absl::ZeroDuration();
  // Continual devices: images per Learn batch (>= 1), batches per cycle (>= 1), and the batch
  // from which the stream is contrast-inverted (-1: never).
  int batch_size = 32;
  int batches_per_sync = 10;
  int64_t shift_after = -1;
  // Run returns after this many rounds taken part in (recipe: updates acknowledged; continual:
  // open rounds synced in, whether or not there was learning to send); 0 = no limit.
  int max_rounds = 0;
  // Run returns after this much time on the injected clock (0 = no limit, >= 0).
  absl::Duration max_duration = absl::ZeroDuration();
  // Seeds the learner, local training (recipe minibatches) and the stream's order.
  uint64_t seed = 1;
  BackoffOptions backoff;
  // Bounds on the waits the server suggests (0 < min_poll <= max_poll).
  absl::Duration min_poll = absl::Milliseconds(100);
  absl::Duration max_poll = absl::Seconds(10);
  // Announced at Join.
  std::string software = "fedcl-client";
  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
  bool recipe() const { return method == "recipe"; }
};

// What a run did. Counters are for this run unless noted.
struct DeviceStats {
  int64_t participations = 0;     // updates acknowledged (duplicates included)
  int64_t duplicates = 0;         // acknowledged as already accepted (a lost reply resolved)
  int64_t rounds = 0;             // rounds taken part in (see DeviceOptions::max_rounds)
  int64_t rounds_trained = 0;     // recipe rounds trained
  int64_t rounds_skipped = 0;     // participation draws that said no
  int64_t updates_dropped = 0;    // round closed / stale modules / refused
  int64_t training_failures = 0;  // local training diverged; the round was left
  int64_t retries = 0;            // calls retried after a transient failure
  int64_t rejoins = 0;            // joins after the server did not know the client
  int64_t backbone_downloads = 0;
  int64_t modules_downloaded = 0;
  int64_t batches = 0;               // continual: batches learned
  int64_t scored = 0, correct = 0;   // continual: images scored before learning, and right
  int64_t last_round = -1;           // the last round acknowledged, -1 if none
  double last_loss = 0.0;            // its training loss
  bool resumed = false;              // a state file was read at Create
  bool state_set_aside = false;      // a corrupt state file was set aside at Create
  int64_t enrolled_round = -1;       // as the server reported at the last Join
  int64_t total_participations = 0;  // over the device's life (from the state)
  // Growing methods, now: adapters in the mixtures, growths refused, grown adapters not proposed.
  int64_t adapters = 0, growth_refusals = 0, proposals_pending = 0;
  double prequential_accuracy() const {
    return scored > 0 ? static_cast<double>(correct) / static_cast<double>(scored) : 0.0;
  }
};

// Where the device gets its environment. Every field has a working default.
struct DeviceEnvironment {
  base::FileSystem* fs = &base::FileSystem::Default();
  base::Clock* clock = &base::Clock::Real();
  base::LogSink* log = &base::LogSink::Stderr();
  // Waits for the given duration. Null: a real sleep that Stop interrupts.
  std::function<void(absl::Duration)> sleep;
  // Null: a GrpcPort built from options.server.
  std::unique_ptr<device::FederationPort> port;
};

class Device {
 public:
  // Validates the options, builds the port, loads the local data and reads the device state
  // (setting a corrupt file aside). Nothing touches the network yet.
  static absl::StatusOr<std::unique_ptr<Device>> Create(const DeviceOptions& options,
                                                        DeviceEnvironment environment);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Runs until max_rounds, max_duration or Stop (OK), or a fatal error (see the top of this
  // file). The state is saved either way. Call once.
  absl::Status Run();
  // Makes Run return soon: interrupts the default sleep and cancels calls in flight. Learning
  // not acknowledged stays saved for the next run. Thread-safe; idempotent.
  void Stop();
  DeviceStats stats() const;

 private:
  Device(const DeviceOptions& options, DeviceEnvironment environment);

  absl::Status RunLoop();
  absl::Status Cycle();
  // Joins (retrying), gets the server's backbone and builds the learner and its session.
  absl::Status Prepare();
  absl::Status BuildLearner(const std::string& backbone_bytes, const std::string& digest);
  absl::StatusOr<std::string> BackboneBytes(const std::string& digest);
  absl::Status CheckDataFits(const nn::ModelConfig& config) const;
  absl::Status RecipeRound(const device::RoundWork& work);
  // The participation draw for an offered round (see the top of this file); logs a no once.
  bool Draw(const fl::WorkAssignment& work);
  // The last round the server acknowledged an update of (-1: none).
  int64_t SubmittedRound() const;
  // Counts and logs an answered submission (this cycle's or a lost reply's, resolved).
  void CountOutcome(const device::SubmitOutcome& out);
  absl::Status LearnStream(int batches);
  // Submits the queued learning for `round`; *submitted (if not null) when acknowledged.
  absl::Status SubmitRound(int64_t round, bool* submitted);
  absl::Status SaveLocked() ABSL_NO_THREAD_SAFETY_ANALYSIS;
  bool Participates(int64_t round, int extensions) const;

  // Calls `call` until it returns something other than a transient failure, sleeping a
  // backoff between attempts; a halt (Stop, time limit) ends it early with Cancelled.
  template <typename Call>
  std::invoke_result_t<Call> Retry(absl::string_view what, Call&& call);
  bool ShouldHalt();
  bool Finished();
  void Sleep(absl::Duration duration);
  absl::Duration ClampPoll(absl::Duration duration) const;
  void Log(base::LogLevel level, absl::string_view message);
  void Count(const std::function<void(DeviceStats&)>& change);

  const DeviceOptions options_;
  base::FileSystem& fs_;
  base::Clock& clock_;
  base::LogSink& log_;
  std::function<void(absl::Duration)> sleep_;
  std::unique_ptr<device::FederationPort> port_;
  proto::DeviceStateStore store_;
  std::optional<v1::DeviceState> stored_;  // read at Create, applied when the learner exists
  data::Dataset data_;
  Backoff backoff_;

  // The learner and its session; session_mu_ is the session's mutex (held while learning).
  mutable std::mutex session_mu_;
  std::unique_ptr<cl::Learner> learner_;
  std::unique_ptr<device::DeviceSession> session_;
  std::string backbone_digest_;
  std::optional<device::ServerInfo> server_;

  bool ran_ = false;
  bool halted_ = false;
  absl::Time run_deadline_ = absl::InfiniteFuture();
  // The round of the last participation draw, its deadline and how often it was extended.
  int64_t draw_round_ = -1;
  absl::Time draw_deadline_;
  int draw_extensions_ = 0;
  bool draw_logged_ = false;
  int64_t last_synced_round_ = -1;
  std::optional<absl::Status> refused_;  // a FAILED_PRECONDITION on submit, unexplained
  // The continual stream: the order of the current pass and the position in it.
  std::vector<int> order_;
  size_t next_ = 0;
  uint64_t pass_ = 0;

  mutable absl::Mutex mu_;
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  DeviceStats stats_ ABSL_GUARDED_BY(mu_);
};

namespace internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}
inline absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace internal

template <typename Call>
std::invoke_result_t<Call> Device::Retry(absl::string_view what, Call&& call) {
  backoff_.Reset();
  while (true) {
    if (ShouldHalt()) return absl::CancelledError("the device was stopped");
    std::invoke_result_t<Call> result = call();
    const absl::Status& status = internal::StatusOf(result);
    if (!device::IsTransient(status)) return result;
    if (ShouldHalt()) return absl::CancelledError("the device was stopped");
    const int limit = options_.backoff.max_consecutive_failures;
    if (limit > 0 && backoff_.failures() + 1 >= limit) {
      return internal::WithContext(status,
                                   absl::StrCat(what, " failed ", limit, " times in a row"));
    }
    const absl::Duration delay = backoff_.Next();
    Count([](DeviceStats& s) { ++s.retries; });
    Log(base::LogLevel::kWarning,
        absl::StrCat(what, " failed (", absl::StatusCodeToString(status.code()), ": ",
                     status.message(), "); retrying in ", absl::FormatDuration(delay)));
    Sleep(delay);
  }
}

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_DEVICE_H_
