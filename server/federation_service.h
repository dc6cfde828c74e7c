// The fedcl.v1.Federation gRPC service: each handler authenticates, decodes the request into
// core types, calls the transport-free fl::Coordinator, encodes the reply, and maps the
// absl::Status through ToGrpcStatus. It owns no learning state.
//
// Uploads (SubmitUpdate) are staged whole before anything is folded, because validation (finite
// values, the norm bound, the CRC) needs the whole update; at most `uploads.capacity` uploads are
// staged at once and the others wait before reading their data, so server memory stays O(D)
// however many clients submit. A client has at most its share of uploads in progress, and an
// upload that stalls past its idle or total deadline loses its slot (upload_slots.h): a watchdog
// thread enforces the deadlines against the injected clock. The journal commit and the fold run
// on a small worker pool, never on gRPC's threads.
//
// Thread-safe (gRPC calls handlers concurrently).
#ifndef FEDCL_SERVER_FEDERATION_SERVICE_H_
#define FEDCL_SERVER_FEDERATION_SERVICE_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/base/clock.h"
#include "core/base/log.h"
#include "core/fl/coordinator.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "server/token_auth.h"
#include "server/upload_slots.h"
#include "server/work_queue.h"

namespace fedcl::server {

struct ServiceOptions {
  int64_t max_message_bytes = 4 << 20;  // also set on the gRPC server
  int64_t chunk_bytes = 1 << 20;        // chunks sent; the largest chunk accepted
  // Upload slots: uploads staged in memory at once, each client's share, idle and total deadlines.
  UploadSlotOptions uploads;
  int worker_threads = 2;  // journal + fold workers
  // Run Submit (validation, journal, fold) on gRPC's thread instead of a worker. Right when
  // nothing in it blocks (no journal to fsync): it saves a thread hop per update.
  bool inline_submits = false;
};

// A payload ready to stream: bytes and their CRC-32.
struct Payload {
  std::string bytes;
  uint32_t crc32 = 0;
};
std::shared_ptr<const Payload> MakePayload(std::string bytes);

// SubmitUpdate is served raw (submit_reactor.h); every other method as messages.
class FederationService final
    : public v1::Federation::WithRawCallbackMethod_SubmitUpdate<v1::Federation::CallbackService> {
 public:
  // `authenticator` null means every call is allowed (loopback development only; the server
  // logs a warning). `backbone` is the serialized ModelCheckpoint clients download. Upload
  // deadlines are read from `clock`. `options` must be valid (uploads.Validate()).
  FederationService(fl::Coordinator& coordinator, const TokenAuthenticator* authenticator,
                    v1::ServerInfo info, std::shared_ptr<const Payload> backbone,
                    const ServiceOptions& options, base::Clock& clock, base::LogSink& log);
  ~FederationService() override;

  // Set by the host after each evaluation; reported by GetStatus.
  void SetEvaluation(int64_t round, double accuracy);

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* context,
                                 const v1::JoinRequest* request,
                                 v1::JoinResponse* response) override;
  grpc::ServerUnaryReactor* GetWork(grpc::CallbackServerContext* context,
                                    const v1::GetWorkRequest* request,
                                    v1::GetWorkResponse* response) override;
  grpc::ServerWriteReactor<v1::Chunk>* DownloadBackbone(
      grpc::CallbackServerContext* context, const v1::DownloadBackboneRequest* request) override;
  grpc::ServerWriteReactor<v1::Chunk>* DownloadModule(
      grpc::CallbackServerContext* context, const v1::DownloadModuleRequest* request) override;
  grpc::ServerReadReactor<grpc::ByteBuffer>* SubmitUpdate(grpc::CallbackServerContext* context,
                                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* context,
                                  const v1::LeaveRequest* request,
                                  v1::LeaveResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override;

  grpc::ServerUnaryReactor* ReportShard(grpc::CallbackServerContext* context,
                                        const v1::ReportShardRequest* request,
                                        v1::ReportShardResponse* response) override;
  grpc::ServerUnaryReactor* ProposeModule(grpc::CallbackServerContext* context,
                                          const v1::ProposeModuleRequest* request,
                                          v1::ProposeModuleResponse* response) override;
  grpc::ServerUnaryReactor* AttachDescriptor(grpc::CallbackServerContext* context,
                                             const v1::AttachDescriptorRequest* request,
                                             v1::AttachDescriptorResponse* response) override;
  // Called (on the reporting worker's call) after ReportShard closed a round, before the reply,
  // with the close's status: the host logs and evaluates the round there, so the next round
  // cannot close before it has, and stops when the close failed (only a restart recovers).
  void SetRoundClosedHook(std::function<void(const absl::Status&)> hook) {
    round_closed_hook_ = std::move(hook);
  }

  // For the upload reactor (submit_reactor.cc).
  absl::Status Authorize(grpc::CallbackServerContext* context, fl::ClientId client) const;
  // Whoever the call's bearer token authenticates, for calls that name no client (needs an
  // authenticator).
  absl::StatusOr<Principal> Caller(grpc::CallbackServerContext* context) const;
  fl::Coordinator& coordinator() { return coordinator_; }
  UploadSlots& upload_slots() { return upload_slots_; }
  const UploadSlots& upload_slots() const { return upload_slots_; }
  StagingBuffers& staging() { return staging_; }
  WorkQueue& workers() { return *workers_; }
  const ServiceOptions& options() const { return options_; }
  base::LogSink& log() { return log_; }

 private:
  absl::StatusOr<std::shared_ptr<const Payload>> ModulePayload(const std::string& name,
                                                               int64_t version,
                                                               bool with_descriptor);

  fl::Coordinator& coordinator_;
  const TokenAuthenticator* const authenticator_;
  const v1::ServerInfo info_;
  const std::shared_ptr<const Payload> backbone_;
  const ServiceOptions options_;
  base::LogSink& log_;
  std::function<void(const absl::Status&)> round_closed_hook_;
  // Serialises ReportShard calls with the round-closed hook, so that a round is evaluated before
  // the next can close.
  absl::Mutex reports_mu_;
  UploadSlots upload_slots_;
  StagingBuffers staging_;
  std::unique_ptr<WorkQueue> workers_;
  // The watchdog: runs upload_slots_.ExpireDue() every check period until stopping.
  void WatchUploads();
  absl::Mutex watchdog_mu_;
  bool stopping_ ABSL_GUARDED_BY(watchdog_mu_) = false;
  std::thread watchdog_;

  absl::Mutex mu_;
  // Serialized current module versions, so many downloads share one serialization; keyed by
  // name, plus a suffix for the payloads that carry a descriptor.
  std::map<std::string, std::pair<int64_t, std::shared_ptr<const Payload>>> payloads_
      ABSL_GUARDED_BY(mu_);
  int64_t evaluated_round_ ABSL_GUARDED_BY(mu_) = -1;
  double evaluated_accuracy_ ABSL_GUARDED_BY(mu_) = 0.0;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_FEDERATION_SERVICE_H_
