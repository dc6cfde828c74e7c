#include "server/federation_service.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "core/fl/update_validation.h"
#include "proto/chunks.h"
#include "proto/federation_convert.h"
#include "proto/tensor_convert.h"
#include "server/grpc_status.h"
#include "server/submit_reactor.h"

namespace fedcl::server {
namespace {

constexpr absl::string_view kBearer = "Bearer ";

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Streams a payload in chunks (proto/chunks.h).
class ChunkWriter final : public grpc::ServerWriteReactor<v1::Chunk> {
 public:
  // Sends `payload` from byte `offset` (checked by StartDownload).
  ChunkWriter(std::shared_ptr<const Payload> payload, int64_t chunk_bytes, int64_t offset)
      : payload_(std::move(payload)),
        splitter_(payload_->bytes, payload_->crc32, chunk_bytes, offset) {
    WriteNext();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "download interrupted"));
      return;
    }
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (!splitter_.Next(&chunk_)) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&chunk_);
  }
  std::shared_ptr<const Payload> payload_;
  proto::ChunkSplitter splitter_;
  v1::Chunk chunk_;
};

class ErrorWriter final : public grpc::ServerWriteReactor<v1::Chunk> {
 public:
  explicit ErrorWriter(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

// The download of `payload` from `offset` (a resumed download's), or OUT_OF_RANGE past its end.
grpc::ServerWriteReactor<v1::Chunk>* StartDownload(std::shared_ptr<const Payload> payload,
                                                   int64_t chunk_bytes, int64_t offset,
                                                   absl::string_view what) {
  const int64_t size = static_cast<int64_t>(payload->bytes.size());
  if (offset < 0 || offset > size) {
    return new ErrorWriter(absl::OutOfRangeError(
        absl::StrCat("offset ", offset, " is outside the ", size, " bytes of the ", what)));
  }
  return new ChunkWriter(std::move(payload), chunk_bytes, offset);
}

}  // namespace

std::shared_ptr<const Payload> MakePayload(std::string bytes) {
  auto payload = std::make_shared<Payload>();
  payload->crc32 = base::Crc32(bytes);
  payload->bytes = std::move(bytes);
  return payload;
}

FederationService::FederationService(fl::Coordinator& coordinator,
                                     const TokenAuthenticator* authenticator, v1::ServerInfo info,
                                     std::shared_ptr<const Payload> backbone,
                                     const ServiceOptions& options, base::Clock& clock,
                                     base::LogSink& log)
    : coordinator_(coordinator),
      authenticator_(authenticator),
      info_(std::move(info)),
      backbone_(std::move(backbone)),
      options_(options),
      log_(log),
      upload_slots_(options.uploads, clock),
      staging_(options.uploads.capacity),
      workers_(std::make_unique<WorkQueue>(options.worker_threads)),
      watchdog_([this] { WatchUploads(); }) {}

FederationService::~FederationService() {
  {
    absl::MutexLock lock(&watchdog_mu_);
    stopping_ = true;
  }
  watchdog_.join();
}

void FederationService::WatchUploads() {
  const absl::Duration period = upload_slots_.check_period();
  absl::MutexLock lock(&watchdog_mu_);
  while (!watchdog_mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) {
    watchdog_mu_.Unlock();
    upload_slots_.ExpireDue();
    watchdog_mu_.Lock();
  }
}

absl::Status FederationService::Authorize(grpc::CallbackServerContext* context,
                                          fl::ClientId client) const {
  if (authenticator_ == nullptr) return absl::OkStatus();
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return absl::UnauthenticatedError("missing authorization metadata");
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, kBearer)) {
    return absl::UnauthenticatedError("authorization must be 'Bearer <token>'");
  }
  return authenticator_->Check(value.substr(kBearer.size()), client);
}

absl::StatusOr<Principal> FederationService::Caller(grpc::CallbackServerContext* context) const {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  absl::string_view value =
      it == metadata.end() ? "" : absl::string_view(it->second.data(), it->second.size());
  absl::ConsumePrefix(&value, kBearer);
  return authenticator_->Authenticate(value);
}

void FederationService::SetEvaluation(int64_t round, double accuracy) {
  absl::MutexLock lock(&mu_);
  evaluated_round_ = round;
  evaluated_accuracy_ = accuracy;
}

grpc::ServerUnaryReactor* FederationService::Join(grpc::CallbackServerContext* context,
                                                  const v1::JoinRequest* request,
                                                  v1::JoinResponse* response) {
  absl::Status status = Authorize(context, request->client_id());
  if (!status.ok()) return Reply(context, status);
  absl::StatusOr<int64_t> round = coordinator_.Enroll(request->client_id());
  if (!round.ok()) return Reply(context, round.status());
  response->set_client_id(request->client_id());
  response->set_enrolled_round(*round);
  *response->mutable_server() = info_;
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FederationService::GetWork(grpc::CallbackServerContext* context,
                                                     const v1::GetWorkRequest* request,
                                                     v1::GetWorkResponse* response) {
  absl::Status status = Authorize(context, request->client_id());
  if (!status.ok()) return Reply(context, status);
  std::vector<fl::ModuleVersion> held;
  for (const v1::ModuleVersion& h : request->held()) held.push_back({h.name(), h.version()});
  absl::StatusOr<fl::WorkAssignment> work = coordinator_.GetWork(request->client_id(), held);
  if (!work.ok()) return Reply(context, work.status());
  proto::ToProto(*work, response);
  return Reply(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::Chunk>* FederationService::DownloadBackbone(
    grpc::CallbackServerContext* context, const v1::DownloadBackboneRequest* request) {
  absl::Status status = Authorize(context, request->client_id());
  if (!status.ok()) return new ErrorWriter(status);
  return StartDownload(backbone_, options_.chunk_bytes, request->offset(), "backbone");
}

absl::StatusOr<std::shared_ptr<const Payload>> FederationService::ModulePayload(
    const std::string& name, int64_t version, bool with_descriptor) {
  // Payloads with a descriptor are not cached: a descriptor may be attached within a version,
  // and only a device installing a pooled expert asks for one.
  const std::string& key = name;
  if (!with_descriptor) {
    absl::MutexLock lock(&mu_);
    auto it = payloads_.find(key);
    if (it != payloads_.end() && it->second.first == version) return it->second.second;
  }
  // Serialize outside the lock; two concurrent first downloads may both do it, which is harmless.
  FEDCL_ASSIGN_OR_RETURN(fl::ModuleSnapshot snapshot, coordinator_.GetModule(name, version));
  v1::ModulePayload message;
  proto::ToProto(snapshot.spec, message.mutable_module());
  message.mutable_module()->set_version(snapshot.version);
  message.mutable_module()->set_num_values(snapshot.values->num_values());
  proto::ToProto(*snapshot.values, message.mutable_parameters());
  if (with_descriptor && snapshot.descriptor != nullptr) {
    proto::ToProto(*snapshot.descriptor, message.mutable_descriptor_tensors());
  }
  std::shared_ptr<const Payload> payload = MakePayload(message.SerializeAsString());
  if (with_descriptor) return payload;
  absl::MutexLock lock(&mu_);
  payloads_[key] = {version, payload};
  return payload;
}

grpc::ServerWriteReactor<v1::Chunk>* FederationService::DownloadModule(
    grpc::CallbackServerContext* context, const v1::DownloadModuleRequest* request) {
  absl::Status status = Authorize(context, request->client_id());
  if (!status.ok()) return new ErrorWriter(status);
  absl::StatusOr<std::shared_ptr<const Payload>> payload =
      ModulePayload(request->name(), request->version(), request->with_descriptor());
  if (!payload.ok()) return new ErrorWriter(payload.status());
  return StartDownload(*std::move(payload), options_.chunk_bytes, request->offset(),
                       "module's payload");
}

grpc::ServerReadReactor<grpc::ByteBuffer>* FederationService::SubmitUpdate(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return SubmitReactor::Start(*this, context, response);
}

grpc::ServerUnaryReactor* FederationService::Leave(grpc::CallbackServerContext* context,
                                                   const v1::LeaveRequest* request,
                                                   v1::LeaveResponse* response) {
  absl::Status status = Authorize(context, request->client_id());
  if (status.ok()) status = coordinator_.Leave(request->client_id(), request->permanent());
  return Reply(context, status);
}

grpc::ServerUnaryReactor* FederationService::GetStatus(grpc::CallbackServerContext* context,
                                                       const v1::GetStatusRequest* request,
                                                       v1::GetStatusResponse* response) {
  if (authenticator_ != nullptr) {
    // Any valid token may read the status; it names no client.
    absl::Status status = Caller(context).status();
    if (!status.ok()) return Reply(context, status);
  }
  const fl::CoordinatorStatus s = coordinator_.Status();
  response->set_round(s.round);
  response->set_round_state(std::string(fl::RoundStateName(s.state)));
  response->set_deadline_unix_ms(absl::ToUnixMillis(s.deadline));
  response->set_accepted_this_round(s.accepted);
  response->set_enrolled_clients(s.enrolled);
  for (const fl::ModuleVersion& m : s.modules) {
    v1::ModuleVersion* v = response->add_modules();
    v->set_name(m.name);
    v->set_version(m.version);
  }
  response->set_aggregator(s.aggregator);
  response->set_weight_min(s.weight_min);
  response->set_weight_mean(s.weight_mean);
  response->set_weight_max(s.weight_max);
  for (const fl::ClientStatus& c : s.clients) {
    v1::ClientSummary* summary = response->add_clients();
    summary->set_client_id(c.record.id);
    summary->set_enrolled_round(c.record.enrolled_round);
    summary->set_revoked(c.record.revoked);
    summary->set_participations(c.record.participations);
    summary->set_last_participation_round(c.record.last_participation_round);
    summary->set_intervals(c.record.fedau.intervals);
    summary->set_mean_interval(c.record.fedau.mean_interval());
    summary->set_current_weight(c.current_weight);
  }
  for (const fl::PoolModuleStatus& m : s.pool) {
    v1::PoolModuleSummary* summary = response->add_pool();
    summary->set_name(m.name);
    summary->set_block(m.block);
    summary->set_version(m.version);
    summary->set_contributors(m.contributors);
    summary->set_holders(m.holders);
  }
  response->set_pool_merges(s.pool_merges);
  absl::MutexLock lock(&mu_);
  response->set_evaluated_round(evaluated_round_);
  response->set_evaluated_accuracy(evaluated_accuracy_);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FederationService::ProposeModule(grpc::CallbackServerContext* context,
                                                           const v1::ProposeModuleRequest* request,
                                                           v1::ProposeModuleResponse* response) {
  absl::Status status = Authorize(context, request->client_id());
  if (!status.ok()) return Reply(context, status);
  absl::StatusOr<fl::ModuleProposal> proposal = proto::ProposalFromProto(*request);
  if (!proposal.ok()) return Reply(context, proposal.status());
  absl::StatusOr<fl::ProposalResult> result = coordinator_.ProposeModule(*proposal);
  if (!result.ok()) return Reply(context, result.status());
  response->set_module_id(result->module_id);
  response->set_name(result->name);
  response->set_merged(result->merged);
  response->set_divergence(result->divergence);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FederationService::AttachDescriptor(
    grpc::CallbackServerContext* context, const v1::AttachDescriptorRequest* request,
    v1::AttachDescriptorResponse* response) {
  absl::Status status = Authorize(context, request->client_id());
  if (!status.ok()) return Reply(context, status);
  absl::StatusOr<nn::ParameterSet> descriptor = proto::FromProto(request->descriptor_tensors());
  if (!descriptor.ok()) {
    return Reply(context, absl::InvalidArgumentError(
                              absl::StrCat("the descriptor for '", fl::EchoInput(request->name()),
                                           "': ", descriptor.status().message())));
  }
  absl::StatusOr<bool> attached =
      coordinator_.AttachDescriptor(request->client_id(), request->name(), *descriptor);
  if (!attached.ok()) return Reply(context, attached.status());
  response->set_attached(*attached);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* FederationService::ReportShard(grpc::CallbackServerContext* context,
                                                         const v1::ReportShardRequest* request,
                                                         v1::ReportShardResponse* response) {
  if (authenticator_ != nullptr) {
    absl::StatusOr<Principal> principal = Caller(context);
    if (!principal.ok()) return Reply(context, principal.status());
    if (!principal->worker) {
      return Reply(context, absl::PermissionDeniedError("ReportShard needs a worker token"));
    }
  }
  // The round policy (barrier) counts the reports and closes the round.
  absl::MutexLock lock(&reports_mu_);
  absl::StatusOr<fl::Coordinator::ReportResult> reported =
      coordinator_.Report(request->shard(), request->num_shards(), request->round());
  if (!reported.ok()) return Reply(context, reported.status());
  if (reported->closed && round_closed_hook_) round_closed_hook_(reported->close_status);
  if (!reported->close_status.ok()) return Reply(context, reported->close_status);
  response->set_round(reported->round);
  response->set_shards_reported(reported->reported);
  return Reply(context, absl::OkStatus());
}

}  // namespace fedcl::server
