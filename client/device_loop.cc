#include "client/device_loop.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/checkpoint.pb.h"

namespace fedcl::client {
namespace {

// The backbone cache in the state directory.
constexpr char kBackboneCacheName[] = "backbone.ckpt";
// Stream key of the backoff jitter ("back").
constexpr uint64_t kBackoffStreamKey = 0x6261636b;
// Joins in a row, each answered by "unknown client", before the loop gives up.
constexpr int kMaxRejoinsInARow = 3;

[[maybe_unused]] const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

// Codes that mean "this call may succeed if tried again" (see device_loop.h).
bool IsTransient(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

std::string ShortDigest(absl::string_view digest) {
  return std::string(digest.substr(0, 12)) + (digest.size() > 12 ? "..." : "");
}

// A checkpoint file and the hex SHA-256 of its payload, the bytes the server's digest covers.
struct CheckpointFile {
  std::unique_ptr<v1::ModelCheckpoint> message;
  std::string digest;
};

absl::StatusOr<CheckpointFile> ReadCheckpointFile(const base::FileSystem& fs,
                                                  const std::string& path, int64_t max_bytes) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs.ReadFile(path, static_cast<uint64_t>(max_bytes) +
                                                                  proto::kEnvelopeHeaderSize));
  CheckpointFile file;
  file.message = std::make_unique<v1::ModelCheckpoint>();
  FEDCL_RETURN_IF_ERROR(
      proto::DecodeEnvelope(bytes, path, proto::PayloadKind::kModelCheckpoint, file.message.get()));
  file.digest = proto::Sha256Hex(absl::string_view(bytes).substr(proto::kEnvelopeHeaderSize));
  return file;
}

}  // namespace

absl::Status DeviceLoopOptions::Validate() const {
  auto bad = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("device loop: ", message));
  };
  if (state_dir.empty()) return bad("state_dir is required");
  if (!(participation_probability > 0.0 && participation_probability <= 1.0)) {
    return bad("participation_probability must be in (0, 1]");
  }
  if (max_rounds < 0) return bad("max_rounds must be >= 0");
  if (max_duration < absl::ZeroDuration()) return bad("max_duration must be >= 0");
  if (min_poll <= absl::ZeroDuration() || max_poll < min_poll) {
    return bad("polling needs 0 < min_poll <= max_poll");
  }
  FEDCL_RETURN_IF_ERROR(backoff.Validate());
  return data.Validate();
}

DeviceLoop::DeviceLoop(const DeviceLoopOptions& options, DeviceEnvironment environment)
    : options_(options),
      fs_(*environment.fs),
      clock_(*environment.clock),
      log_(*environment.log),
      sleep_(std::move(environment.sleep)),
      transport_(std::move(environment.transport)),
      store_(fs_, options.state_dir),
      backoff_(options.backoff,
               base::Rng::ForStream(options.seed, {kBackoffStreamKey, options.client_id})) {}

DeviceLoop::~DeviceLoop() = default;

absl::StatusOr<std::unique_ptr<DeviceLoop>> DeviceLoop::Create(const DeviceLoopOptions& options,
                                                               DeviceEnvironment environment) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  if (environment.fs == nullptr || environment.clock == nullptr || environment.log == nullptr) {
    return absl::InvalidArgumentError("device loop: the environment needs fs, clock and log");
  }
  if (environment.transport == nullptr) {
    FEDCL_ASSIGN_OR_RETURN(environment.transport,
                           FederationClient::Create(options.server, *environment.fs));
  }
  std::unique_ptr<DeviceLoop> loop(new DeviceLoop(options, std::move(environment)));
  FEDCL_ASSIGN_OR_RETURN(loop->data_, LoadLocalData(loop->fs_, options.data, options.client_id));
  FEDCL_ASSIGN_OR_RETURN(ClientStateStore::Loaded loaded, loop->store_.Load(options.client_id));
  loop->state_ = std::move(loaded.state);
  loop->pending_from_earlier_run_ = loop->state_.pending.has_value();
  if (loaded.set_aside) {
    loop->Log(base::LogLevel::kWarning,
              absl::StrCat("the client state was unreadable (", loaded.problem,
                           "); set it aside as '", loop->store_.path(),
                           ClientStateStore::kCorruptSuffix, "' and starting afresh"));
  } else if (loaded.resumed) {
    const ClientState& s = loop->state_;
    loop->Log(base::LogLevel::kInfo,
              absl::StrCat(
                  "resuming from '", loop->store_.path(), "': ", s.modules.size(),
                  " modules held, ", s.participations, " updates acknowledged so far",
                  s.pending ? absl::StrCat(", an update of round ", s.pending->round, " to submit")
                            : ""));
  }
  {
    absl::MutexLock lock(&loop->mu_);
    loop->stats_.resumed = loaded.resumed;
    loop->stats_.state_set_aside = loaded.set_aside;
    loop->stats_.total_participations = loop->state_.participations;
  }
  loop->Log(base::LogLevel::kInfo, absl::StrCat(loop->data_.size(), " local samples"));
  return loop;
}

void DeviceLoop::Log(base::LogLevel level, absl::string_view message) {
  log_.Write(level, absl::StrCat("client ", options_.client_id, ": ", message));
}

DeviceStats DeviceLoop::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void DeviceLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_requested_ = true;
  }
  transport_->CancelPendingCalls();
}

bool DeviceLoop::ShouldHalt() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_requested_) return true;
  }
  return clock_.Now() >= run_deadline_;
}

absl::Status DeviceLoop::Halt() {
  halted_ = true;
  return absl::CancelledError("the device loop was stopped");
}

bool DeviceLoop::Finished() {
  if (ShouldHalt()) {
    halted_ = true;
    return true;
  }
  absl::MutexLock lock(&mu_);
  return options_.max_rounds > 0 && stats_.participations >= options_.max_rounds;
}

void DeviceLoop::Sleep(absl::Duration duration) {
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

absl::Duration DeviceLoop::ClampPoll(absl::Duration duration) const {
  return std::clamp(duration, options_.min_poll, options_.max_poll);
}

template <typename Call>
std::invoke_result_t<Call> DeviceLoop::Retry(absl::string_view what, Call&& call) {
  backoff_.Reset();
  while (true) {
    if (ShouldHalt()) return Halt();
    std::invoke_result_t<Call> result = call();
    const absl::Status& status = StatusOf(result);
    if (!IsTransient(status.code())) return result;
    if (ShouldHalt()) return Halt();
    const int limit = options_.backoff.max_consecutive_failures;
    if (limit > 0 && backoff_.failures() + 1 >= limit) {
      return WithContext(status, absl::StrCat(what, " failed ", limit, " times in a row"));
    }
    const absl::Duration delay = backoff_.Next();
    {
      absl::MutexLock lock(&mu_);
      ++stats_.retries;
    }
    Log(base::LogLevel::kWarning,
        absl::StrCat(what, " failed (", absl::StatusCodeToString(status.code()), ": ",
                     status.message(), "); retrying in ", absl::FormatDuration(delay)));
    Sleep(delay);
  }
}

absl::Status DeviceLoop::SaveState() {
  absl::Status status = store_.Save(state_);
  if (!status.ok()) return WithContext(status, "cannot save the client state");
  absl::MutexLock lock(&mu_);
  stats_.total_participations = state_.participations;
  return absl::OkStatus();
}

bool DeviceLoop::Participates(int64_t round, int extensions) const {
  if (options_.participation_probability >= 1.0) return true;
  const uint64_t id = options_.client_id;
  const uint64_t r = static_cast<uint64_t>(round);
  base::Rng rng = extensions == 0
                      ? base::Rng::ForStream(options_.participation_seed, {id, r})
                      : base::Rng::ForStream(options_.participation_seed,
                                             {id, r, static_cast<uint64_t>(extensions)});
  return rng.Bernoulli(options_.participation_probability);
}

absl::Status DeviceLoop::Run() {
  if (ran_) return absl::FailedPreconditionError("DeviceLoop::Run may be called once");
  ran_ = true;
  if (options_.max_duration > absl::ZeroDuration()) {
    run_deadline_ = clock_.Now() + options_.max_duration;
  }
  absl::Status status = RunLoop();
  if (!status.ok() && halted_ && absl::IsCancelled(status)) status = absl::OkStatus();
  if (status.ok() && halted_) {
    absl::MutexLock lock(&mu_);
    log_.Write(base::LogLevel::kInfo,
               absl::StrCat("client ", options_.client_id, ": ",
                            stop_requested_ ? "stopped" : "time limit reached"));
  }
  if (!status.ok()) Log(base::LogLevel::kError, absl::StrCat("stopping: ", status.ToString()));
  return status;
}

absl::Status DeviceLoop::RunLoop() {
  FEDCL_RETURN_IF_ERROR(JoinServer());
  const fl::ClientId id = options_.client_id;
  while (!Finished()) {
    if (state_.pending.has_value()) {
      FEDCL_RETURN_IF_ERROR(SubmitPending());
      continue;
    }
    absl::StatusOr<fl::WorkAssignment> work =
        Retry("asking for work", [&] { return transport_->GetWork(id, replica_->held()); });
    if (absl::IsNotFound(work.status()) && rejoins_in_a_row_ < kMaxRejoinsInARow) {
      ++rejoins_in_a_row_;
      Log(base::LogLevel::kWarning, absl::StrCat("the server does not know this client (",
                                                 work.status().message(), "); joining again"));
      {
        absl::MutexLock lock(&mu_);
        ++stats_.rejoins;
      }
      FEDCL_RETURN_IF_ERROR(JoinServer());
      continue;
    }
    FEDCL_RETURN_IF_ERROR(work.status());
    rejoins_in_a_row_ = 0;
    if (work->action == fl::WorkAssignment::Action::kWait) {
      Sleep(ClampPoll(work->retry_after));
      continue;
    }
    FEDCL_RETURN_IF_ERROR(HandleTrain(*work));
  }
  return absl::OkStatus();
}

absl::Status DeviceLoop::JoinServer() {
  const fl::ClientId id = options_.client_id;
  FEDCL_ASSIGN_OR_RETURN(JoinResult joined,
                         Retry("joining", [&] { return transport_->Join(id, options_.software); }));
  if (joined.server.protocol != kProtocol) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server speaks '", joined.server.protocol, "', not '", kProtocol, "'"));
  }
  // Chunks come with a few bytes of framing; they must fit in the messages we accept.
  if (joined.server.chunk_bytes <= 0 ||
      joined.server.chunk_bytes + 1024 > options_.server.max_message_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server sends chunks of ", joined.server.chunk_bytes,
                     " bytes; this client accepts messages of at most ",
                     options_.server.max_message_bytes, " bytes"));
  }
  if (joined.client_id != id) {
    return absl::FailedPreconditionError(
        absl::StrCat("joined as client ", id, " but the server answered for ", joined.client_id));
  }
  if (!state_.enrolled_round.has_value()) {
    Log(base::LogLevel::kInfo, absl::StrCat("joined: enrolled at round ", joined.enrolled_round));
  } else if (*state_.enrolled_round != joined.enrolled_round) {
    Log(base::LogLevel::kWarning,
        absl::StrCat("the server no longer knew this client (enrolled at round ",
                     *state_.enrolled_round, "): enrolled again at round ", joined.enrolled_round));
  } else {
    Log(base::LogLevel::kInfo,
        absl::StrCat("re-attached: enrolled at round ", joined.enrolled_round));
  }
  state_.enrolled_round = joined.enrolled_round;
  server_ = std::move(joined.server);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.joins;
    stats_.enrolled_round = *state_.enrolled_round;
  }
  FEDCL_RETURN_IF_ERROR(PrepareModel());
  return SaveState();
}

absl::Status DeviceLoop::PrepareModel() {
  if (replica_ != nullptr && loaded_digest_ == server_->backbone_digest) return absl::OkStatus();
  FEDCL_ASSIGN_OR_RETURN(backbone_, LoadBackbone());
  loaded_digest_ = server_->backbone_digest;
  if (state_.backbone_digest != loaded_digest_) {
    if (!state_.backbone_digest.empty()) {
      Log(base::LogLevel::kWarning,
          "the server's backbone has changed: the modules held for the old one are dropped");
    }
    if (state_.pending.has_value()) {
      ++state_.dropped_updates;
      absl::MutexLock lock(&mu_);
      ++stats_.updates_dropped;
    }
    state_.pending.reset();
    state_.modules.clear();
    state_.backbone_digest = loaded_digest_;
  }
  FEDCL_RETURN_IF_ERROR(RebuildReplica());
  return SaveState();
}

absl::StatusOr<std::unique_ptr<v1::ModelCheckpoint>> DeviceLoop::LoadBackbone() {
  const std::string digest = server_->backbone_digest;
  const int64_t max_bytes = options_.server.max_download_bytes;
  if (!options_.backbone_checkpoint.empty()) {
    FEDCL_ASSIGN_OR_RETURN(CheckpointFile file,
                           ReadCheckpointFile(fs_, options_.backbone_checkpoint, max_bytes));
    if (file.digest != digest) {
      return absl::FailedPreconditionError(
          absl::StrCat("backbone checkpoint '", options_.backbone_checkpoint,
                       "' is not the server's backbone (SHA-256 ", ShortDigest(file.digest),
                       " where the server announces ", ShortDigest(digest),
                       "); leave the backbone checkpoint unset to download it"));
    }
    Log(base::LogLevel::kInfo, absl::StrCat("backbone from '", options_.backbone_checkpoint, "'"));
    return std::move(file.message);
  }
  const std::string cache = base::JoinPath(options_.state_dir, kBackboneCacheName);
  if (fs_.Exists(cache)) {
    absl::StatusOr<CheckpointFile> file = ReadCheckpointFile(fs_, cache, max_bytes);
    if (file.ok() && file->digest == digest) return std::move(file->message);
    Log(base::LogLevel::kInfo,
        file.ok() ? std::string("the cached backbone is not the server's current one")
                  : absl::StrCat("the cached backbone is unusable: ", file.status().message()));
  }
  const fl::ClientId id = options_.client_id;
  FEDCL_ASSIGN_OR_RETURN(
      std::string bytes, Retry("downloading the backbone", [&]() -> absl::StatusOr<std::string> {
        FEDCL_ASSIGN_OR_RETURN(std::string downloaded, transport_->DownloadBackbone(id));
        const std::string got = proto::Sha256Hex(downloaded);
        if (got != digest) {
          return absl::DataLossError(absl::StrCat("the downloaded backbone has SHA-256 ",
                                                  ShortDigest(got), "; the server announced ",
                                                  ShortDigest(digest)));
        }
        return downloaded;
      }));
  auto message = std::make_unique<v1::ModelCheckpoint>();
  if (!message->ParseFromString(bytes)) {
    return absl::InvalidArgumentError("the server's backbone does not parse as a ModelCheckpoint");
  }
  {
    absl::MutexLock lock(&mu_);
    ++stats_.backbone_downloads;
  }
  Log(base::LogLevel::kInfo, absl::StrCat("downloaded the backbone (", bytes.size(), " bytes)"));
  // The cache only saves a download next time; failing to write it is not fatal.
  absl::Status cached = fs_.CreateDirectories(options_.state_dir);
  if (cached.ok()) {
    cached = proto::WriteEnvelope(fs_, cache, proto::PayloadKind::kModelCheckpoint, *message);
  }
  if (!cached.ok()) {
    Log(base::LogLevel::kWarning, absl::StrCat("cannot cache the backbone: ", cached.message()));
  }
  return message;
}

absl::Status DeviceLoop::CheckDataFitsModel() const {
  const nn::ModelConfig& config = replica_->model().config();
  if (config.image_channels != data_.channels || config.image_height != data_.height ||
      config.image_width != data_.width) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the local data has %dx%dx%d images; the server's model takes %dx%dx%d", data_.channels,
        data_.height, data_.width, config.image_channels, config.image_height, config.image_width));
  }
  for (int32_t label : data_.labels) {
    if (label >= config.num_classes) {
      return absl::FailedPreconditionError(absl::StrCat("the local data has label ", label,
                                                        "; the server's model has ",
                                                        config.num_classes, " classes"));
    }
  }
  return absl::OkStatus();
}

absl::Status DeviceLoop::RebuildReplica() {
  replica_.reset();
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint loaded,
                         proto::FromCheckpointProto(*backbone_, "the server's backbone"));
  loaded.modules.clear();  // detach any stored module before the model moves
  replica_ = std::make_unique<fl::ClientModel>(std::move(loaded.model));
  FEDCL_RETURN_IF_ERROR(CheckDataFitsModel());
  for (auto it = state_.modules.begin(); it != state_.modules.end();) {
    absl::Status installed = replica_->Install(it->spec, it->version, it->values);
    if (installed.ok()) {
      ++it;
      continue;
    }
    Log(base::LogLevel::kWarning,
        absl::StrCat("held module '", it->spec.name, "' does not fit the backbone (",
                     installed.message(), "); it will be downloaded again"));
    it = state_.modules.erase(it);
  }
  return absl::OkStatus();
}

absl::Status DeviceLoop::InstallModule(DownloadedModule module) {
  absl::Status installed = replica_->Install(module.spec, module.version, module.values);
  if (!installed.ok()) {
    // Perhaps the server restarted with another backbone: join again to find out.
    const std::string digest = loaded_digest_;
    FEDCL_RETURN_IF_ERROR(JoinServer());
    if (loaded_digest_ != digest) return absl::OkStatus();  // the next work says what to fetch
    return WithContext(installed, absl::StrCat("module '", module.spec.name, "' version ",
                                               module.version, " does not fit the backbone"));
  }
  HeldModule held{module.spec, module.version, std::move(module.values)};
  auto it = std::find_if(state_.modules.begin(), state_.modules.end(),
                         [&](const HeldModule& m) { return m.spec.name == held.spec.name; });
  if (it == state_.modules.end()) {
    state_.modules.push_back(std::move(held));
  } else {
    *it = std::move(held);
  }
  absl::MutexLock lock(&mu_);
  ++stats_.module_downloads;
  return absl::OkStatus();
}

absl::Status DeviceLoop::HandleTrain(const fl::WorkAssignment& work) {
  const fl::ClientId id = options_.client_id;
  const int64_t round = work.round;
  if (round != draw_round_ || work.deadline > draw_deadline_) {
    // A new round, or the same one extended: a new draw.
    draw_extensions_ = round == draw_round_ ? draw_extensions_ + 1 : 0;
    draw_round_ = round;
    draw_deadline_ = work.deadline;
    draw_logged_ = false;
  }
  if (!Participates(round, draw_extensions_)) {
    if (!draw_logged_) {
      draw_logged_ = true;
      Log(base::LogLevel::kInfo,
          absl::StrCat("round ", round, draw_extensions_ > 0 ? " (extended)" : "",
                       ": not taking part (p = ", options_.participation_probability, ")"));
      absl::MutexLock lock(&mu_);
      ++stats_.rounds_skipped;
    }
    Sleep(ClampPoll(work.deadline - clock_.Now() + options_.min_poll));
    return absl::OkStatus();
  }
  if (work.modules.empty()) return absl::InvalidArgumentError("the server assigned no modules");
  bool downloaded = false;
  for (const fl::ModuleInfo& info : work.modules) {
    if (!info.download) continue;
    absl::StatusOr<DownloadedModule> module =
        Retry(absl::StrCat("downloading module '", info.spec.name, "'"),
              [&] { return transport_->DownloadModule(id, info.spec.name, info.version); });
    if (absl::IsNotFound(module.status())) {
      Log(base::LogLevel::kInfo, absl::StrCat("module '", info.spec.name, "' moved on (",
                                              module.status().message(), "); asking again"));
      if (downloaded) FEDCL_RETURN_IF_ERROR(SaveState());
      return absl::OkStatus();
    }
    FEDCL_RETURN_IF_ERROR(module.status());
    const std::string digest = loaded_digest_;
    FEDCL_RETURN_IF_ERROR(InstallModule(*std::move(module)));
    if (loaded_digest_ != digest) return absl::OkStatus();  // new backbone: ask again
    downloaded = true;
  }
  if (refused_.has_value()) {
    // A submission was refused with FAILED_PRECONDITION. If no module needed fetching, it was
    // not a stale version: stop rather than train and be refused again.
    if (!downloaded) return *refused_;
    refused_.reset();
  }
  // Modules the server no longer pools must not stay attached to the model.
  const size_t before = state_.modules.size();
  std::erase_if(state_.modules, [&](const HeldModule& held) {
    return std::none_of(work.modules.begin(), work.modules.end(),
                        [&](const fl::ModuleInfo& m) { return m.spec.name == held.spec.name; });
  });
  if (state_.modules.size() != before) FEDCL_RETURN_IF_ERROR(RebuildReplica());
  if (downloaded || state_.modules.size() != before) FEDCL_RETURN_IF_ERROR(SaveState());

  std::vector<std::string> names;
  for (const fl::ModuleInfo& info : work.modules) names.push_back(info.spec.name);
  absl::StatusOr<fl::LocalUpdate> update =
      fl::TrainLocally(*replica_, names, work.recipe, data_, {}, {options_.seed, id, round});
  if (absl::IsFailedPrecondition(update.status())) {
    Log(base::LogLevel::kWarning,
        absl::StrCat("round ", round, ": leaving the round: ", update.status().message()));
    {
      absl::MutexLock lock(&mu_);
      ++stats_.training_failures;
    }
    Sleep(ClampPoll(work.deadline - clock_.Now() + options_.min_poll));
    return absl::OkStatus();
  }
  FEDCL_RETURN_IF_ERROR(update.status());
  {
    absl::MutexLock lock(&mu_);
    ++stats_.rounds_trained;
  }
  state_.pending = PendingUpdate{round, *std::move(update)};
  FEDCL_RETURN_IF_ERROR(SaveState());
  return SubmitPending();
}

absl::Status DeviceLoop::DropPending() {
  state_.pending.reset();
  ++state_.dropped_updates;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.updates_dropped;
  }
  return SaveState();
}

absl::Status DeviceLoop::SubmitPending() {
  const fl::ClientId id = options_.client_id;
  const PendingUpdate& pending = *state_.pending;
  const int64_t round = pending.round;
  if (pending_from_earlier_run_) {
    pending_from_earlier_run_ = false;
    Log(base::LogLevel::kInfo, absl::StrCat("round ", round, ": resubmitting the saved update"));
    absl::MutexLock lock(&mu_);
    ++stats_.resubmissions;
  }
  absl::StatusOr<fl::SubmitResult> result = Retry(
      absl::StrCat("submitting the update of round ", round),
      [&] { return transport_->SubmitUpdate(id, round, pending.update, server_->chunk_bytes); });
  if (result.ok()) {
    Log(base::LogLevel::kInfo,
        absl::StrFormat("round %d: %d samples, loss %.4f, weight %.4f, duplicate %s", round,
                        pending.update.num_samples, pending.update.loss, result->weight,
                        result->duplicate ? "yes" : "no"));
    {
      absl::MutexLock lock(&mu_);
      ++stats_.participations;
      if (result->duplicate) ++stats_.duplicates;
      stats_.last_round = round;
      stats_.last_loss = pending.update.loss;
    }
    rejoins_in_a_row_ = 0;
    state_.last_submitted_round = round;
    ++state_.participations;
    state_.pending.reset();
    return SaveState();
  }
  const absl::Status& status = result.status();
  switch (status.code()) {
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kOutOfRange:
      Log(base::LogLevel::kInfo,
          absl::StrCat("round ", round, ": update dropped (", status.message(), ")"));
      return DropPending();
    case absl::StatusCode::kFailedPrecondition:
      Log(base::LogLevel::kWarning, absl::StrCat("round ", round, ": update refused (",
                                                 status.message(), "); fetching modules again"));
      refused_ = status;
      return DropPending();
    case absl::StatusCode::kNotFound:
      if (rejoins_in_a_row_ >= kMaxRejoinsInARow) return status;
      ++rejoins_in_a_row_;
      Log(base::LogLevel::kWarning, absl::StrCat("the server does not know this client (",
                                                 status.message(), "); joining again"));
      {
        absl::MutexLock lock(&mu_);
        ++stats_.rejoins;
      }
      return JoinServer();  // the pending update is submitted again next
    case absl::StatusCode::kInvalidArgument:
      // The server will never take this update; do not send it again after a restart.
      FEDCL_RETURN_IF_ERROR(DropPending());
      return WithContext(status, absl::StrCat("the update of round ", round, " was refused"));
    default:
      return status;
  }
}

}  // namespace fedcl::client
