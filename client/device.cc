#include "client/device.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "proto/device_state.h"

namespace fedcl::client {
namespace {

constexpr uint64_t kBackoffStreamKey = 0x6261636b;  // "back": the backoff's jitter

}  // namespace

absl::Status DeviceOptions::Validate() const {
  auto bad = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("device: ", message));
  };
  if (state_dir.empty()) return bad("state_dir is required");
  if (!(participation_probability > 0.0 && participation_probability <= 1.0)) {
    return bad("participation_probability must be in (0, 1]");
  }
  if (throttle_per_sample < absl::ZeroDuration() || throttle_per_sample > absl::Seconds(10)) {
    return bad("throttle_per_sample must be in [0, 10 s]");
  }
  if (!(learning_rate > 0)) return bad("learning_rate must be > 0");
  if (module_memory_budget_bytes < 0) return bad("module_memory_budget_bytes must be >= 0");
  if (batch_size < 1) return bad("batch_size must be >= 1");
  if (batches_per_sync < 1) return bad("batches_per_sync must be >= 1");
  if (shift_after < -1) return bad("shift_after must be >= 0, or -1 for no shift");
  if (max_rounds < 0) return bad("max_rounds must be >= 0");
  if (max_duration < absl::ZeroDuration()) return bad("max_duration must be >= 0");
  if (min_poll <= absl::ZeroDuration() || max_poll < min_poll) {
    return bad("polling needs 0 < min_poll <= max_poll");
  }
  // The method and its options are checked by the method itself (no model needed).
  if (absl::Status refused = cl::CreateMethod({.name = method, .options = method_options}).status();
      !refused.ok()) {
    return bad(refused.message());
  }
  FEDCL_RETURN_IF_ERROR(backoff.Validate());
  return data.Validate();
}

Device::Device(const DeviceOptions& options, DeviceEnvironment environment)
    : options_(options),
      fs_(*environment.fs),
      clock_(*environment.clock),
      log_(*environment.log),
      sleep_(std::move(environment.sleep)),
      port_(std::move(environment.port)),
      store_(fs_, options.state_dir),
      backoff_(options.backoff,
               base::Rng::ForStream(options.seed, {kBackoffStreamKey, options.client_id})) {}

Device::~Device() = default;

absl::StatusOr<std::unique_ptr<Device>> Device::Create(const DeviceOptions& options,
                                                       DeviceEnvironment environment) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  if (environment.fs == nullptr || environment.clock == nullptr || environment.log == nullptr) {
    return absl::InvalidArgumentError("device: the environment needs fs, clock and log");
  }
  if (environment.port == nullptr) {
    // Downloads cut short are kept beside the state, so a restarted device resumes them.
    proto::GrpcPortOptions server = options.server;
    if (server.partial_downloads_dir.empty() && !options.state_dir.empty())
      server.partial_downloads_dir = base::JoinPath(options.state_dir, "downloads");
    FEDCL_ASSIGN_OR_RETURN(environment.port, proto::GrpcPort::Create(server, *environment.fs));
  }
  std::unique_ptr<Device> device(new Device(options, std::move(environment)));
  // Recipe devices train on the standardised dataset; continual ones standardise each batch as
  // the SDK does, after the stream's shift.
  LocalDataOptions data = options.data;
  data.normalize = options.recipe();
  FEDCL_ASSIGN_OR_RETURN(device->data_, LoadLocalData(device->fs_, data, options.client_id));
  FEDCL_ASSIGN_OR_RETURN(proto::DeviceStateStore::Loaded loaded,
                         device->store_.Load(options.client_id, options.method));
  device->stored_ = std::move(loaded.state);
  if (loaded.set_aside) {
    device->Log(base::LogLevel::kWarning,
                absl::StrCat("the device state was unreadable (", loaded.problem,
                             "); set it aside as '", device->store_.path(),
                             proto::DeviceStateStore::kCorruptSuffix, "' and starting afresh"));
  } else if (device->stored_.has_value()) {
    const v1::DeviceState& s = *device->stored_;
    device->Log(base::LogLevel::kInfo,
                absl::StrCat("resuming from '", device->store_.path(), "': ", s.modules_size(),
                             " modules held, ", s.submissions(), " updates acknowledged so far",
                             s.has_in_flight()
                                 ? absl::StrCat(", an update of round ", s.in_flight().round(),
                                                " whose answer was not received")
                                 : "",
                             loaded.from_client_state ? " (converted from client_state)" : ""));
  }
  device->Count([&](DeviceStats& s) {
    s.resumed = device->stored_.has_value();
    s.state_set_aside = loaded.set_aside;
    s.total_participations = device->stored_.has_value() ? device->stored_->submissions() : 0;
  });
  device->Log(base::LogLevel::kInfo, absl::StrCat(device->data_.size(), " local samples"));
  return device;
}

void Device::Log(base::LogLevel level, absl::string_view message) {
  log_.Write(level, absl::StrCat("client ", options_.client_id, ": ", message));
}

void Device::Count(const std::function<void(DeviceStats&)>& change) {
  absl::MutexLock lock(&mu_);
  change(stats_);
}

DeviceStats Device::stats() const {
  DeviceStats s;
  {
    absl::MutexLock lock(&mu_);
    s = stats_;
  }
  std::lock_guard<std::mutex> lock(session_mu_);
  if (session_ != nullptr) {
    s.rejoins = session_->CountersLocked().rejoins;                   // this run's
    s.total_participations = session_->CountersLocked().submissions;  // the device's life
  }
  if (learner_ != nullptr && learner_->expansion() != nullptr) {
    for (int a : learner_->expansion()->AdaptersPerBlock()) s.adapters += a;
    s.growth_refusals = learner_->expansion()->growth_refusals();
    s.proposals_pending = session_->ProposalsPendingLocked();
  }
  return s;
}

int64_t Device::SubmittedRound() const {
  std::lock_guard<std::mutex> lock(session_mu_);
  return session_->CountersLocked().last_submitted_round;
}

void Device::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_requested_ = true;
  }
  port_->CancelPendingCalls();
}

bool Device::ShouldHalt() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) return true;
  }
  return clock_.Now() >= run_deadline_;
}

bool Device::Finished() {
  if (ShouldHalt()) {
    halted_ = true;
    return true;
  }
  absl::MutexLock lock(&mu_);
  return options_.max_rounds > 0 && stats_.rounds >= options_.max_rounds;
}

void Device::Sleep(absl::Duration duration) {
  if (run_deadline_ != absl::InfiniteFuture()) {
    duration = std::min(duration, run_deadline_ - clock_.Now());
  }
  if (duration <= absl::ZeroDuration()) return;
  if (sleep_) {
    sleep_(duration);
    return;
  }
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stop_requested_), duration);
}

absl::Duration Device::ClampPoll(absl::Duration duration) const {
  return std::clamp(duration, options_.min_poll, options_.max_poll);
}

bool Device::Participates(int64_t round, int extensions) const {
  if (options_.participation_probability >= 1.0) return true;
  const uint64_t id = options_.client_id;
  const uint64_t r = static_cast<uint64_t>(round);
  base::Rng rng = extensions == 0
                      ? base::Rng::ForStream(options_.participation_seed, {id, r})
                      : base::Rng::ForStream(options_.participation_seed,
                                             {id, r, static_cast<uint64_t>(extensions)});
  return rng.Bernoulli(options_.participation_probability);
}

absl::Status Device::SaveLocked() {
  v1::DeviceState state = proto::EncodeDeviceState(options_.client_id, options_.method,
                                                   backbone_digest_, *session_, *learner_);
  if (stored_.has_value()) state.set_rounds_skipped(stored_->rounds_skipped());
  absl::Status saved = store_.Save(state);
  if (!saved.ok()) return internal::WithContext(saved, "cannot save the device state");
  Count([&](DeviceStats& s) { s.total_participations = state.submissions(); });
  return absl::OkStatus();
}

absl::Status Device::Run() {
  if (ran_) return absl::FailedPreconditionError("Device::Run may be called once");
  ran_ = true;
  if (options_.max_duration > absl::ZeroDuration()) {
    run_deadline_ = clock_.Now() + options_.max_duration;
  }
  absl::Status status = RunLoop();
  if (!status.ok() && absl::IsCancelled(status) && ShouldHalt()) {
    halted_ = true;
    status = absl::OkStatus();
  }
  if (session_ != nullptr) {
    std::lock_guard<std::mutex> lock(session_mu_);
    const absl::Status saved = SaveLocked();
    if (status.ok()) status = saved;
  }
  if (status.ok() && halted_) {
    absl::MutexLock lock(&mu_);
    log_.Write(base::LogLevel::kInfo,
               absl::StrCat("client ", options_.client_id, ": ",
                            stop_requested_ ? "stopped" : "time limit reached"));
  }
  if (!status.ok()) Log(base::LogLevel::kError, absl::StrCat("stopping: ", status.ToString()));
  return status;
}

absl::Status Device::RunLoop() {
  FEDCL_RETURN_IF_ERROR(Prepare());
  while (!Finished()) FEDCL_RETURN_IF_ERROR(Cycle());
  return absl::OkStatus();
}

}  // namespace fedcl::client
