// fedcl::Client's side of the federation: the backbone from the server, the device session's
// sync (core/device/device_session.h: work, downloads and re-basing, exactly-once submission of
// queued learning, grown adapters through the pool), and background syncs. No lock is held
// across a network call.
#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/envelope.h"
#include "proto/grpc_port.h"

namespace fedcl {
namespace {

constexpr char kBackboneCacheName[] = "backbone.ckpt";

}  // namespace

void Client::Impl::SetStage(SyncProgress::Stage stage, int64_t bytes_done, int64_t bytes_total) {
  std::function<void(const SyncProgress&)> callback;
  SyncProgress progress{.stage = stage, .bytes_done = bytes_done, .bytes_total = bytes_total};
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    progress_ = progress;
    callback = on_progress_;
  }
  if (callback) callback(progress);
}

SyncProgress Client::Impl::SyncStatus() const {
  std::lock_guard<std::mutex> stats(stats_mu_);
  return progress_;
}

bool Client::Impl::Cancelled() const { return cancel_.load(); }

void Client::Impl::CancelSync() {
  cancel_.store(true);
  if (transport_ != nullptr) transport_->CancelPendingCalls();
}

absl::Status Client::Impl::CreateTransport() {
  if (transport_ != nullptr) return absl::OkStatus();
  proto::GrpcPortOptions o;
  o.target = options_.server_address;
  o.tls_ca_file = options_.tls_ca_file;
  o.tls_server_name = options_.tls_server_name;
  o.token = options_.token;
  o.call_timeout = options_.call_timeout;
  // Downloads cut short (the backbone, mostly) survive the app's restart.
  o.partial_downloads_dir = base::JoinPath(options_.storage_dir, "downloads");
  FEDCL_ASSIGN_OR_RETURN(transport_, proto::GrpcPort::Create(o, fs_));
  return absl::OkStatus();
}

absl::Status Client::Impl::CheckServer(const device::JoinResult& joined) {
  std::lock_guard<std::mutex> lock(model_mu_);
  if (learner_ != nullptr) {
    const nn::ModelConfig& theirs = joined.server.model;
    if (theirs.num_classes != config_.num_classes || theirs.input_size() != config_.input_size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the server's model has ", theirs.num_classes, " classes and ",
                       theirs.input_size(), " inputs, this device's ", config_.num_classes, " and ",
                       config_.input_size(), " (set num_classes to the server's)"));
    }
  }
  server_ = joined.server;
  return absl::OkStatus();
}

absl::Status Client::Impl::EnsureBackboneFromServer(const device::JoinResult& joined) {
  bool have_backbone = false;
  {
    std::lock_guard<std::mutex> lock(model_mu_);
    have_backbone = learner_ != nullptr;
    if (have_backbone && backbone_digest_ == joined.server.backbone_digest) return absl::OkStatus();
  }
  SetStage(SyncProgress::Stage::kDownloading, 0, 0);
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, transport_->DownloadBackbone(options_.client_id));
  const std::string digest = proto::Sha256Hex(absl::string_view(bytes));
  if (digest != joined.server.backbone_digest) {
    return absl::DataLossError("the downloaded backbone does not match the server's digest");
  }
  // The download is the checkpoint's payload; the cache holds it in its envelope.
  v1::ModelCheckpoint message;
  if (!message.ParseFromString(bytes))
    return absl::DataLossError("the downloaded backbone does not parse");
  FEDCL_ASSIGN_OR_RETURN(std::string file,
                         proto::EncodeEnvelope(proto::PayloadKind::kModelCheckpoint, message));
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  std::lock_guard<std::mutex> lock(model_mu_);
  if (!have_backbone) {
    FEDCL_RETURN_IF_ERROR(LoadBackboneBytesLocked(file, "the server's backbone"));
    FEDCL_RETURN_IF_ERROR(fs_.WriteFileAtomically(cache, file));
    Log(LogLevel::kInfo,
        absl::StrCat("downloaded the server's backbone (", bytes.size(), " bytes)"));
    return absl::OkStatus();
  }
  // The device loaded a backbone whose file differs from the server's: a server re-saves the
  // pretrained checkpoint with its own head and metadata. Same backbone weights: adopt the
  // server's file and keep every module and queued delta. Other weights: refuse.
  FEDCL_ASSIGN_OR_RETURN(bool same, SameBackboneAsCacheLocked(message));
  if (!same) {
    return absl::FailedPreconditionError(
        "the loaded backbone is not the server's (its weights differ): load the server's "
        "backbone, or clear the storage directory to download it");
  }
  FEDCL_RETURN_IF_ERROR(fs_.WriteFileAtomically(cache, file));
  backbone_digest_ = digest;
  Log(LogLevel::kInfo, "the loaded backbone has the server's weights: adopted the server's file");
  return SaveLocked();
}

absl::StatusOr<SyncResult> Client::Impl::RunSync() {
  cancel_.store(false);
  if (transport_ == nullptr) {
    return absl::FailedPreconditionError(
        "this device has no server_address: it learns and predicts offline only");
  }
  SetStage(SyncProgress::Stage::kConnecting, 0, 0);
  absl::StatusOr<SyncResult> result = [&]() -> absl::StatusOr<SyncResult> {
    std::optional<device::JoinResult> joined;
    if (!server_.has_value()) {
      // The first sync: join to learn the server's backbone; the session, built with the
      // learner over it, is then told of the join rather than joining again.
      FEDCL_ASSIGN_OR_RETURN(joined,
                             transport_->Join(options_.client_id, "fedcl-sdk " FEDCL_VERSION));
      if (joined->server.protocol != device::kProtocol) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the server speaks '", joined->server.protocol, "', not '", device::kProtocol, "'"));
      }
      FEDCL_RETURN_IF_ERROR(CheckServer(*joined));
    }
    FEDCL_RETURN_IF_ERROR(EnsureBackboneFromServer({.server = *server_}));
    if (joined.has_value()) FEDCL_RETURN_IF_ERROR(session_->Joined(*joined));
    FEDCL_ASSIGN_OR_RETURN(device::SyncResult synced, session_->Sync());
    return SyncResult{.round = synced.round,
                      .submitted = synced.submitted,
                      .round_closed = synced.round_closed,
                      .modules_downloaded = synced.modules_downloaded,
                      .bytes_downloaded = synced.bytes_downloaded,
                      .bytes_uploaded = synced.bytes_uploaded,
                      .retry_after = synced.retry_after};
  }();
  if (result.ok()) {
    std::lock_guard<std::mutex> stats(stats_mu_);
    ++run_.syncs;
  } else if (!device::IsTransient(result.status())) {
    Log(LogLevel::kWarning, absl::StrCat("sync failed: ", result.status().message()));
  }
  SetStage(result.ok() ? SyncProgress::Stage::kDone : SyncProgress::Stage::kFailed, 0, 0);
  return result;
}

absl::StatusOr<SyncResult> Client::Impl::Sync() {
  FEDCL_RETURN_IF_ERROR(CheckConditions(Activity::kSync));
  {
    std::lock_guard<std::mutex> lock(sync_mu_);
    if (sync_running_) return absl::FailedPreconditionError("a sync is already running");
    sync_running_ = true;
  }
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    on_progress_ = nullptr;
  }
  absl::StatusOr<SyncResult> result = RunSync();
  std::lock_guard<std::mutex> lock(sync_mu_);
  sync_running_ = false;
  return result;
}

absl::Status Client::Impl::StartSync(std::function<void(const SyncProgress&)> on_progress) {
  FEDCL_RETURN_IF_ERROR(CheckConditions(Activity::kSync));
  std::lock_guard<std::mutex> lock(sync_mu_);
  if (sync_running_) return absl::FailedPreconditionError("a sync is already running");
  if (sync_thread_.joinable()) sync_thread_.join();  // finished; its result is replaced
  sync_running_ = true;
  background_started_ = true;
  background_result_.reset();
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    on_progress_ = std::move(on_progress);
  }
  sync_thread_ = std::thread([this] {
    absl::StatusOr<SyncResult> result = RunSync();
    std::lock_guard<std::mutex> lock(sync_mu_);
    background_result_ = std::move(result);
    sync_running_ = false;
  });
  return absl::OkStatus();
}

absl::StatusOr<SyncResult> Client::Impl::WaitSync() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(sync_mu_);
    if (!background_started_)
      return absl::FailedPreconditionError("no background sync was started");
    thread = std::move(sync_thread_);
  }
  if (thread.joinable()) thread.join();
  std::lock_guard<std::mutex> lock(sync_mu_);
  background_started_ = false;
  absl::StatusOr<SyncResult> result = std::move(*background_result_);
  background_result_.reset();
  return result;
}

}  // namespace fedcl
