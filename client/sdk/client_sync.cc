// fedcl::Client's side of the federation: join, backbone, work, downloads and re-basing, and the
// submission of queued learning. No lock is held across a network call.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/federation_client.h"
#include "client/sdk/client_impl.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/envelope.h"

#ifndef FEDCL_VERSION
#define FEDCL_VERSION "dev"
#endif

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
  client::FederationClientOptions o;
  o.target = options_.server_address;
  o.tls_ca_file = options_.tls_ca_file;
  o.tls_server_name = options_.tls_server_name;
  o.token = options_.token;
  o.call_timeout = options_.call_timeout;
  FEDCL_ASSIGN_OR_RETURN(transport_, client::FederationClient::Create(o, fs_));
  return absl::OkStatus();
}

absl::Status Client::Impl::JoinServer() {
  FEDCL_ASSIGN_OR_RETURN(client::JoinResult joined,
                         transport_->Join(options_.client_id, "fedcl-sdk " FEDCL_VERSION));
  if (joined.server.protocol != client::kProtocol) {
    return absl::FailedPreconditionError(absl::StrCat("the server speaks '", joined.server.protocol,
                                                      "', not '", client::kProtocol, "'"));
  }
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
  enrolled_round_ = joined.enrolled_round;
  server_ = std::move(joined.server);
  return absl::OkStatus();
}

absl::Status Client::Impl::EnsureBackboneFromServer() {
  bool have_backbone = false;
  {
    std::lock_guard<std::mutex> lock(model_mu_);
    have_backbone = learner_ != nullptr;
    if (have_backbone && backbone_digest_ == server_->backbone_digest) return absl::OkStatus();
  }
  SetStage(SyncProgress::Stage::kDownloading, 0, 0);
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, transport_->DownloadBackbone(options_.client_id));
  const std::string digest = proto::Sha256Hex(absl::string_view(bytes));
  if (digest != server_->backbone_digest) {
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

absl::StatusOr<SyncResult> Client::Impl::SyncOnce() {
  if (transport_ == nullptr && options_.server_address.empty()) {
    return absl::FailedPreconditionError(
        "this device has no server_address: it learns and predicts offline only");
  }
  SetStage(SyncProgress::Stage::kConnecting, 0, 0);
  if (!server_.has_value()) FEDCL_RETURN_IF_ERROR(JoinServer());
  FEDCL_RETURN_IF_ERROR(EnsureBackboneFromServer());
  const fl::ClientId id = options_.client_id;
  SyncResult result;
  bool rejoined = false, refetched = false;
  while (true) {
    if (Cancelled()) return absl::CancelledError("the sync was cancelled");
    std::vector<fl::ModuleVersion> held;
    {
      std::lock_guard<std::mutex> lock(model_mu_);
      for (const Module& m : modules_)
        if (m.on_server && m.version >= 0) held.push_back({m.server_name, m.version});
    }
    absl::StatusOr<fl::WorkAssignment> work = transport_->GetWork(id, held);
    if (absl::IsNotFound(work.status()) && !rejoined) {
      rejoined = true;  // the server forgot the device (its state was wiped): join again
      FEDCL_RETURN_IF_ERROR(JoinServer());
      continue;
    }
    FEDCL_RETURN_IF_ERROR(work.status());
    if (work->action != fl::WorkAssignment::Action::kTrain) {
      result.retry_after = work->retry_after;
      return result;
    }
    result.round = work->round;
    {
      // Adapters grown since the last sync go to the pool first, then the work is asked again:
      // it lists the new modules, and one that joined another device's module is re-based
      // onto it by the downloads.
      std::unique_lock<std::mutex> lock(model_mu_);
      bool taken = false;
      FEDCL_RETURN_IF_ERROR(ProposeGrownLocked(lock, work->round, &taken));
      if (taken) {
        FEDCL_RETURN_IF_ERROR(SaveLocked());
        continue;
      }
      FEDCL_RETURN_IF_ERROR(AttachDescriptorsLocked(lock));
    }

    // Download what changed, then re-base under the lock.
    std::vector<client::DownloadedModule> downloads;
    int64_t total = 0;
    for (const fl::ModuleInfo& info : work->modules)
      if (info.download) total += info.num_values * int64_t{sizeof(float)};
    for (const fl::ModuleInfo& info : work->modules) {
      bool with_descriptor = false;
      {
        std::lock_guard<std::mutex> lock(model_mu_);
        const bool pooled = info.spec.role == fl::ModuleRole::kExpert && cl::IsSema(method_) &&
                            !not_installed_.contains(info.spec.name);
        Module* held = FindModuleLocked(info.spec.name);
        // A pooled adapter comes with its descriptor, for detection: when it is new to this
        // device, and when the device runs it without one and the pool now has it.
        bool descriptor_wanted = pooled && info.has_descriptor && held != nullptr &&
                                 !held->descriptor_pending &&
                                 !descriptor_refused_.contains(info.spec.name);
        if (descriptor_wanted) {
          const auto [block, index] = ExpertSlotLocked(*held);
          descriptor_wanted = !learner_->ExpertHasDescriptor(block, index);
        }
        if (!info.download && !descriptor_wanted) continue;
        if (held == nullptr && !pooled) {
          Log(LogLevel::kDebug, absl::StrCat("the server's module '", info.spec.name,
                                             "' is not one this device's method runs"));
          continue;
        }
        with_descriptor = pooled && (held == nullptr || descriptor_wanted);
      }
      SetStage(SyncProgress::Stage::kDownloading, result.bytes_downloaded, total);
      FEDCL_ASSIGN_OR_RETURN(
          client::DownloadedModule module,
          transport_->DownloadModule(id, info.spec.name, info.version, with_descriptor));
      result.bytes_downloaded += module.values.num_values() * int64_t{sizeof(float)};
      downloads.push_back(std::move(module));
    }
    SetStage(SyncProgress::Stage::kDownloading, result.bytes_downloaded, total);
    std::vector<std::string> server_modules;
    for (const fl::ModuleInfo& info : work->modules) server_modules.push_back(info.spec.name);

    fl::LocalUpdate update;
    uint64_t last_sequence = 0;
    std::vector<Eigen::VectorXf> submitted;  // per module, the queued learning it sums
    // Per module: submitted later rather than now (a grown adapter whose proposal is pending,
    // or that awaits its group's values); its learning stays queued after the acknowledgement.
    std::vector<bool> later;
    {
      std::lock_guard<std::mutex> lock(model_mu_);
      for (client::DownloadedModule& module : downloads) {
        Module* m = FindModuleLocked(module.spec.name);
        if (m == nullptr) {  // an adapter another device grew
          FEDCL_RETURN_IF_ERROR(InstallPooledExpertLocked(module));
          ++result.modules_downloaded;
          continue;
        }
        if (absl::Status s = m->live->CheckSameLayout(module.values); !s.ok()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "the server's module '", module.spec.name, "' does not fit this device's (",
              s.message(), "): configure the server's modules for method '", options_.method, "'"));
        }
        if (module.descriptor.has_value() && !m->descriptor_pending) {
          const auto [block, index] = ExpertSlotLocked(*m);
          if (absl::Status s = learner_->AttachPooledDescriptor(block, index, *module.descriptor);
              !s.ok()) {
            descriptor_refused_.insert(module.spec.name);
            Log(LogLevel::kWarning, absl::StrCat("detection cannot use the descriptor of '",
                                                 module.spec.name, "': ", s.message()));
          }
        }
        // Fetched only for its descriptor: the device holds these values already.
        if (module.version == m->version) continue;
        // Re-base: queued and uncommitted learning move onto the new values.
        const Eigen::VectorXf shift = module.values.flat_values() - m->base;
        m->base = module.values.flat_values();
        m->committed += shift;
        m->live->flat_values() += shift;
        m->version = module.version;
        ++result.modules_downloaded;
      }
      FEDCL_RETURN_IF_ERROR(CommitLocked());
      if (life_.submissions() > 0 && life_.last_round() == work->round) {
        FEDCL_RETURN_IF_ERROR(SaveLocked());
        return result;  // this round already has the device's update
      }
      submitted.assign(modules_.size(), Eigen::VectorXf());
      for (const Record& r : queue_) {
        update.num_samples += r.samples;
        update.local_steps += r.batches;
        update.loss += r.loss_sum;
        last_sequence = r.sequence;
        for (size_t i = 0; i < modules_.size(); ++i) {
          if (submitted[i].size() == 0) submitted[i] = Eigen::VectorXf::Zero(r.deltas[i].size());
          submitted[i] += r.deltas[i];
        }
      }
      if (update.local_steps > 0) update.loss /= static_cast<double>(update.local_steps);
      later.assign(modules_.size(), false);
      for (size_t i = 0; i < modules_.size(); ++i)
        later[i] = (modules_[i].on_server && modules_[i].version < 0) ||
                   (!modules_[i].on_server && ProposalPendingLocked(modules_[i]));
      for (size_t i = 0; i < modules_.size() && last_sequence > 0; ++i) {
        const Module& m = modules_[i];
        const std::string& name = m.server_name;
        if (!m.on_server || m.version < 0 || submitted[i].isZero(0.0f)) continue;
        if (std::find(server_modules.begin(), server_modules.end(), name) == server_modules.end())
          continue;
        fl::ModuleUpdate mu;
        mu.name = name;
        mu.base_version = m.version;
        for (const nn::TensorInfo& t : m.live->tensors()) mu.layout.push_back({t.name, t.shape});
        mu.values.assign(submitted[i].data(), submitted[i].data() + submitted[i].size());
        update.modules.push_back(std::move(mu));
      }
      FEDCL_RETURN_IF_ERROR(SaveLocked());  // the re-based modules survive a crash mid-submit
    }
    if (update.modules.empty()) return result;  // nothing learned since the last submission

    int64_t upload = 0;
    for (const fl::ModuleUpdate& mu : update.modules)
      upload += static_cast<int64_t>(mu.values.size() * sizeof(float));
    SetStage(SyncProgress::Stage::kSubmitting, 0, upload);
    const int64_t chunk = server_->chunk_bytes > 0 ? server_->chunk_bytes : int64_t{1} << 20;
    absl::StatusOr<fl::SubmitResult> ack = transport_->SubmitUpdate(id, work->round, update, chunk);
    if (absl::IsAborted(ack.status()) || absl::IsOutOfRange(ack.status())) {
      // The round closed (or had not opened) by the time the update arrived: the server never
      // takes it, and the device keeps the learning for the next round it joins.
      std::lock_guard<std::mutex> lock(model_mu_);
      life_.set_rounds_closed(life_.rounds_closed() + 1);
      result.round_closed = true;
      FEDCL_RETURN_IF_ERROR(SaveLocked());
      return result;
    }
    if (absl::IsFailedPrecondition(ack.status()) && !refetched) {
      refetched = true;  // a module moved on between GetWork and submit: re-base and resubmit
      continue;
    }
    if (!ack.ok()) {
      if (!sdk::IsTransient(ack.status())) {
        Log(LogLevel::kError, absl::StrCat("the server refused the update for round ", work->round,
                                           ": ", ack.status().message()));
      }
      return ack.status();
    }
    result.submitted = true;
    result.bytes_uploaded = upload;
    std::lock_guard<std::mutex> lock(model_mu_);
    // The submitted records are now the server's: fold them into base and drop them, except
    // the learning of modules to be submitted later, which goes back on the queue as one record.
    // (Modules added since the snapshot, by growth during the call, come after these.)
    Record kept;
    kept.sequence = last_sequence;
    bool keep = false;
    for (size_t i = 0; i < modules_.size(); ++i) {
      const bool snapshotted = i < submitted.size() && submitted[i].size() > 0;
      if (snapshotted && later[i] && !submitted[i].isZero(0.0f)) {
        kept.deltas.push_back(submitted[i]);
        keep = true;
        continue;
      }
      if (snapshotted) modules_[i].base += submitted[i];
      kept.deltas.push_back(Eigen::VectorXf::Zero(modules_[i].live->num_values()));
    }
    while (!queue_.empty() && queue_.front().sequence <= last_sequence) {
      queue_bytes_ -= queue_.front().bytes();
      queue_.pop_front();
    }
    if (keep) {
      queue_bytes_ += kept.bytes();
      queue_.push_front(std::move(kept));
    }
    life_.set_submissions(life_.submissions() + (ack->duplicate ? 0 : 1));
    life_.set_last_round(work->round);
    FEDCL_RETURN_IF_ERROR(SaveLocked());
    return result;
  }
}

absl::StatusOr<SyncResult> Client::Impl::RunSync() {
  cancel_.store(false);
  absl::StatusOr<SyncResult> result = SyncOnce();
  if (result.ok()) {
    std::lock_guard<std::mutex> stats(stats_mu_);
    ++run_.syncs;
  } else if (!sdk::IsTransient(result.status())) {
    Log(LogLevel::kWarning, absl::StrCat("sync failed: ", result.status().message()));
  }
  SetStage(result.ok() ? SyncProgress::Stage::kDone : SyncProgress::Stage::kFailed, 0, 0);
  return result;
}

absl::StatusOr<SyncResult> Client::Impl::Sync() {
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
