// fedcl::Client: options, the backbone and the learner built on it, statistics, and the public
// class's forwards. Learning and prediction are in client_learning.cc, the durable state in
// client_state.cc, the server side of a sync in client_sync.cc; client_impl.h explains the three
// copies of each shared module.
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "client/sdk/memory_estimate.h"
#include "client/sdk/method_options.h"
#include "core/base/status_macros.h"
#include "core/ood/detector_registry.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/envelope.h"

namespace fedcl {
namespace {

using proto::DeviceStateStore;
using sdk::Mib;
using sdk::ParameterSetBytes;

constexpr char kBackboneCacheName[] = "backbone.ckpt";
constexpr uint64_t kMaxCheckpointBytes = uint64_t{1} << 30;

// A checkpoint's message and the hex SHA-256 of its payload (what the server's digest covers).
absl::StatusOr<std::pair<v1::ModelCheckpoint, std::string>> DecodeCheckpoint(
    const std::string& bytes, const std::string& source) {
  v1::ModelCheckpoint message;
  FEDCL_RETURN_IF_ERROR(
      proto::DecodeEnvelope(bytes, source, proto::PayloadKind::kModelCheckpoint, &message));
  return std::make_pair(
      std::move(message),
      proto::Sha256Hex(absl::string_view(bytes).substr(proto::kEnvelopeHeaderSize)));
}

}  // namespace

absl::string_view SyncStageName(SyncProgress::Stage stage) {
  switch (stage) {
    case SyncProgress::Stage::kIdle:
      return "idle";
    case SyncProgress::Stage::kConnecting:
      return "connecting";
    case SyncProgress::Stage::kDownloading:
      return "downloading";
    case SyncProgress::Stage::kSubmitting:
      return "submitting";
    case SyncProgress::Stage::kDone:
      return "done";
    case SyncProgress::Stage::kFailed:
      return "failed";
  }
  return "unknown";
}

Client::Impl::Impl(const ClientOptions& options, ClientEnvironment environment)
    : options_(options),
      fs_(environment.fs != nullptr ? *environment.fs : base::FileSystem::Default()),
      transport_(std::move(environment.transport)),
      log_sink_(options_.log),
      store_(fs_, options.storage_dir) {
  run_.memory_budget_bytes = options.memory_budget_bytes;
}

Client::Impl::~Impl() {
  CancelSync();
  if (sync_thread_.joinable()) sync_thread_.join();
}

void Client::Impl::Log(LogLevel level, const std::string& message) const {
  if (options_.log) options_.log(level, message);
}

void Client::Impl::LogForwarder::Write(base::LogLevel level, absl::string_view message) {
  if (!callback_) return;
  const LogLevel mapped = level == base::LogLevel::kDebug     ? LogLevel::kDebug
                          : level == base::LogLevel::kInfo    ? LogLevel::kInfo
                          : level == base::LogLevel::kWarning ? LogLevel::kWarning
                                                              : LogLevel::kError;
  callback_(mapped, std::string(message));
}

absl::Status Client::Impl::Init() {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("client options: ", what));
  };
  if (options_.storage_dir.empty()) return bad("storage_dir is required");
  if (options_.memory_budget_bytes <= 0) return bad("memory_budget_bytes must be > 0");
  if (options_.num_classes < 0) return bad("num_classes must be >= 0");
  if (options_.threads < 1 || options_.threads > 64) return bad("threads must be in [1, 64]");
  if (!(options_.learning_rate > 0.0f) || !std::isfinite(options_.learning_rate))
    return bad("learning_rate must be a positive number");
  if (options_.offline_queue_bytes < 0) return bad("offline_queue_bytes must be >= 0");
  if (options_.autosave_batches < 1) return bad("autosave_batches must be >= 1");
  if (options_.call_timeout <= absl::ZeroDuration()) return bad("call_timeout must be > 0");
  if (options_.lae_steps_per_task < 1) return bad("lae_steps_per_task must be >= 1");
  // The method and its options, checked by the method itself (no model needed).
  FEDCL_ASSIGN_OR_RETURN(const std::string method_options, sdk::MethodOptionsText(options_, 0));
  absl::StatusOr<std::unique_ptr<cl::Method>> method =
      cl::CreateMethod({.name = options_.method, .options = method_options});
  if (!method.ok()) return bad(method.status().message());
  if ((*method)->expansion() != nullptr && options_.threads > 1) {
    return bad(absl::StrCat("threads > 1 is not supported with a self-expanding method (",
                            options_.method, ")"));
  }
  // Any registered detector, with options it accepts (the learner checks at FitDetector that
  // the backbone has the hooks it reads).
  if (absl::Status ood = ood::MakeDetector(options_.ood_detector,
                                           {.seed = options_.seed, .options = options_.ood_options})
                             .status();
      !ood.ok()) {
    return bad(absl::StrCat("ood_detector: ", ood.message()));
  }
  FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(options_.storage_dir));
  if (!options_.server_address.empty()) FEDCL_RETURN_IF_ERROR(CreateTransport());
  if (options_.threads > 1) workers_ = std::make_unique<sdk::WorkerPool>(options_.threads - 1);

  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_ASSIGN_OR_RETURN(DeviceStateStore::Loaded loaded,
                         store_.Load(options_.client_id, options_.method));
  if (loaded.set_aside) {
    Log(LogLevel::kError,
        absl::StrCat("the stored device state is unusable and was set aside as ", store_.path(),
                     DeviceStateStore::kCorruptSuffix, ": ", loaded.problem));
  }
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    run_.state_set_aside = loaded.set_aside;
    run_.state_from_backup = loaded.state.has_value() && loaded.from_backup;
    run_.state_restored = loaded.state.has_value();
  }
  stored_ = std::move(loaded.state);
  if (stored_.has_value()) {
    life_ = *stored_;  // the counters; the rest is applied with the backbone
    if (loaded.from_backup) Log(LogLevel::kWarning, "restored the previous good device state");
  }
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  if (!fs_.Exists(cache)) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = fs_.ReadFile(cache, kMaxCheckpointBytes);
  absl::Status loaded_cache = bytes.ok() ? LoadBackboneBytesLocked(*bytes, cache) : bytes.status();
  if (absl::IsResourceExhausted(loaded_cache)) return loaded_cache;
  if (!loaded_cache.ok()) {
    // A damaged cache is not fatal: the next LoadBackbone or sync replaces it.
    Log(LogLevel::kWarning, absl::StrCat("the cached backbone is unusable (",
                                         loaded_cache.message(), "); load one or sync"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Client::Impl::SameBackboneAsCacheLocked(
    const v1::ModelCheckpoint& checkpoint) {
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs_.ReadFile(cache, kMaxCheckpointBytes));
  FEDCL_ASSIGN_OR_RETURN(auto cached, DecodeCheckpoint(bytes, cache));
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint ours,
                         proto::FromCheckpointProto(cached.first, cache));
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint theirs,
                         proto::FromCheckpointProto(checkpoint, "the new backbone"));
  const nn::ParameterSet& a = ours.model->backbone().parameters();
  const nn::ParameterSet& b = theirs.model->backbone().parameters();
  return ours.model->config().backbone == theirs.model->config().backbone &&
         a.CheckSameLayout(b).ok() && a.flat_values() == b.flat_values();
}

absl::Status Client::Impl::LoadBackbone(const std::string& path) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs_.ReadFile(path, kMaxCheckpointBytes));
  std::lock_guard<std::mutex> lock(model_mu_);
  if (learner_ != nullptr) {
    // An app that loads its bundled backbone at every start must not lose the modules learned
    // on it because the cache now holds the server's copy of the same weights.
    FEDCL_ASSIGN_OR_RETURN(auto decoded, DecodeCheckpoint(bytes, path));
    if (decoded.second == backbone_digest_) return absl::OkStatus();
    absl::StatusOr<bool> same = SameBackboneAsCacheLocked(decoded.first);
    if (same.ok() && *same) return absl::OkStatus();
  }
  FEDCL_RETURN_IF_ERROR(LoadBackboneBytesLocked(bytes, path));
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  if (path != cache) FEDCL_RETURN_IF_ERROR(fs_.WriteFileAtomically(cache, bytes));
  return SaveLocked();
}

absl::Status Client::Impl::LoadBackboneBytesLocked(const std::string& bytes,
                                                   const std::string& source) {
  FEDCL_ASSIGN_OR_RETURN(auto decoded, DecodeCheckpoint(bytes, source));
  const std::string& digest = decoded.second;
  if (server_.has_value() && server_->backbone_digest != digest) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", source, "' is not the backbone of the server this device syncs with"));
  }
  if (learner_ != nullptr && digest == backbone_digest_) return absl::OkStatus();
  FEDCL_RETURN_IF_ERROR(BuildLearnerLocked(decoded.first, source));
  backbone_digest_ = digest;
  RestoreLocked();
  std::lock_guard<std::mutex> stats(stats_mu_);
  run_.backbone_loaded = true;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<cl::Learner>> Client::Impl::MakeLearnerLocked(
    const v1::ModelCheckpoint& checkpoint, const std::string& source) const {
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint loaded,
                         proto::FromCheckpointProto(checkpoint, source));
  loaded.modules.clear();  // detach stored modules: the learner brings its own
  std::unique_ptr<nn::Model> model = std::move(loaded.model);
  if (options_.num_classes != 0 && options_.num_classes != model->config().num_classes) {
    FEDCL_ASSIGN_OR_RETURN(model, nn::CopyWithClasses(*model, options_.num_classes, options_.seed));
  }
  // The backbone is frozen: it needs no gradient buffer.
  model->backbone().parameters().DropGradients();
  const int64_t model_bytes = ParameterSetBytes(model->backbone().parameters()) +
                              ParameterSetBytes(model->head().parameters());
  if (model_bytes * options_.threads > options_.memory_budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model in '", source, "' holds ", Mib(model_bytes),
        options_.threads > 1 ? " per copy (" : "",
        options_.threads > 1
            ? absl::StrCat(options_.threads, " copies for ", options_.threads, " threads)")
            : "",
        ", more than the memory budget of ", Mib(options_.memory_budget_bytes)));
  }
  cl::LearnerOptions learner_options;
  learner_options.method = options_.method;
  const int vit_dim =
      model->config().backbone == nn::BackboneKind::kVit ? model->config().vit.dim : 0;
  FEDCL_ASSIGN_OR_RETURN(learner_options.method_options, sdk::MethodOptionsText(options_, vit_dim));
  learner_options.learning_rate = options_.learning_rate;
  learner_options.ood_detector = options_.ood_detector;
  learner_options.ood_options = options_.ood_options;
  learner_options.seed = options_.seed;
  learner_options.task_at_shift = true;  // an app has no task boundaries; a shift is one
  // A method that grows stops while its modules fit what the budget leaves beside the backbone
  // and the buffers of a 32-image learning batch (ClientStats::growth_refusals counts refusals).
  learner_options.module_memory_budget_bytes = std::max<int64_t>(
      1, options_.memory_budget_bytes - ParameterSetBytes(model->backbone().parameters()) -
             sdk::BatchWorkingBytes(model->config(), 32, /*training=*/true));
  return cl::Learner::Create(std::move(model), learner_options);
}

absl::Status Client::Impl::BuildLearnerLocked(const v1::ModelCheckpoint& checkpoint,
                                              const std::string& source) {
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<cl::Learner> learner,
                         MakeLearnerLocked(checkpoint, source));
  std::vector<Replica> replicas(options_.threads - 1);
  for (Replica& r : replicas) {
    FEDCL_ASSIGN_OR_RETURN(r.learner, MakeLearnerLocked(checkpoint, source));
    r.shared = r.learner->SharedModules();
  }
  session_.reset();  // it syncs the learner it was made with
  learner_ = std::move(learner);
  replicas_ = std::move(replicas);
  config_ = learner_->model().config();
  adapted_ = false;
  ++adapt_generation_;
  retained_working_bytes_ = 0;
  app_tasks_ = false;
  device::SessionOptions session_options;
  session_options.client_id = options_.client_id;
  session_options.software = "fedcl-sdk " FEDCL_VERSION;
  session_options.unsent = device::SessionOptions::Unsent::kKeep;
  session_options.offline_queue_bytes = options_.offline_queue_bytes;
  device::SessionEnvironment environment;
  environment.port = transport_.get();
  environment.mu = &model_mu_;
  environment.save = [this] { return SaveLocked(); };
  environment.log = &log_sink_;
  environment.cancelled = [this] { return Cancelled(); };
  environment.progress = [this](device::SessionEnvironment::Stage stage, int64_t done,
                                int64_t total) {
    SetStage(stage == device::SessionEnvironment::Stage::kConnecting
                 ? SyncProgress::Stage::kConnecting
             : stage == device::SessionEnvironment::Stage::kDownloading
                 ? SyncProgress::Stage::kDownloading
                 : SyncProgress::Stage::kSubmitting,
             done, total);
  };
  environment.on_join = [this](const device::JoinResult& joined) { return CheckServer(joined); };
  session_ = std::make_unique<device::DeviceSession>(session_options, *learner_, environment);
  return absl::OkStatus();
}

ClientStats Client::Impl::Stats() const {
  ClientStats s;
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    s = run_;
  }
  std::lock_guard<std::mutex> lock(model_mu_);
  s.learn_batches = life_.learn_batches();
  s.learned_samples = life_.learned_samples();
  s.adapt_batches = life_.adapt_batches();
  if (session_ != nullptr) {
    const device::DeviceSession::Counters& c = session_->CountersLocked();
    s.submissions = c.submissions;
    s.rounds_closed = c.rounds_closed;
    s.queue_records_dropped = c.records_dropped;
    s.last_round = c.last_submitted_round;
    s.queue_records = session_->QueuedRecordsLocked();
    s.queue_bytes = session_->QueuedBytesLocked();
    s.proposals_pending = session_->ProposalsPendingLocked();
  }
  s.memory_used_bytes = HeldBytesLocked() + retained_working_bytes_;
  if (learner_ != nullptr && learner_->expansion() != nullptr) {
    for (int a : learner_->expansion()->AdaptersPerBlock()) s.adapters += a;
    s.growth_refusals = learner_->expansion()->growth_refusals();
  }
  return s;
}

int64_t Client::Impl::input_size() const {
  std::lock_guard<std::mutex> lock(model_mu_);
  return learner_ == nullptr ? 0 : config_.input_size();
}

int Client::Impl::num_classes() const {
  std::lock_guard<std::mutex> lock(model_mu_);
  return learner_ == nullptr ? 0 : config_.num_classes;
}

// ---- The public class: forwards ----------------------------------------------------------

absl::StatusOr<std::unique_ptr<Client>> CreateClientForTesting(const ClientOptions& options,
                                                               ClientEnvironment environment) {
  auto impl = std::make_unique<Client::Impl>(options, std::move(environment));
  FEDCL_RETURN_IF_ERROR(impl->Init());
  return std::make_unique<Client>(std::move(impl));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  return CreateClientForTesting(options, ClientEnvironment{});
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::Status Client::LoadBackbone(const std::string& path) { return impl_->LoadBackbone(path); }
absl::StatusOr<LearnResult> Client::Learn(absl::Span<const float> pixels,
                                          absl::Span<const int32_t> labels) {
  return impl_->Learn(pixels, labels, LearnOptions());
}
absl::StatusOr<LearnResult> Client::Learn(absl::Span<const float> pixels,
                                          absl::Span<const int32_t> labels,
                                          const LearnOptions& options) {
  return impl_->Learn(pixels, labels, options);
}
absl::Status Client::Predict(absl::Span<const float> pixels, absl::Span<Prediction> out) {
  return impl_->Predict(pixels, out);
}
absl::StatusOr<AdaptResult> Client::Adapt(absl::Span<const float> pixels) {
  return impl_->Adapt(pixels);
}
absl::Status Client::FitDetector(absl::Span<const float> pixels, absl::Span<const int32_t> labels) {
  return impl_->FitDetector(pixels, labels);
}
absl::Status Client::BeginTask(absl::Span<const int32_t> classes) {
  return impl_->BeginTask(classes);
}
absl::StatusOr<SyncResult> Client::Sync() { return impl_->Sync(); }
absl::Status Client::StartSync(std::function<void(const SyncProgress&)> on_progress) {
  return impl_->StartSync(std::move(on_progress));
}
SyncProgress Client::SyncStatus() const { return impl_->SyncStatus(); }
absl::StatusOr<SyncResult> Client::WaitSync() { return impl_->WaitSync(); }
void Client::CancelSync() { impl_->CancelSync(); }
absl::Status Client::Save() { return impl_->Save(); }
ClientStats Client::Stats() const { return impl_->Stats(); }
int64_t Client::input_size() const { return impl_->input_size(); }
int Client::num_classes() const { return impl_->num_classes(); }

}  // namespace fedcl
