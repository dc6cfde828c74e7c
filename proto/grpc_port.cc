#include "proto/grpc_port.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/base/status_macros.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "proto/chunks.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "proto/federation_convert.h"
#include "proto/partial_downloads.h"
#include "proto/tensor_convert.h"
#include "proto/update_codec.h"
#include "proto/wire_format.h"

namespace fedcl::proto {
namespace {

constexpr int64_t kMaxBytesLimit = int64_t{1} << 30;

// The one place where grpc::Status becomes absl::Status: both number their codes as
// google.rpc.Code does, so the code and the message carry over unchanged.
absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

int ClampToInt(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, 1 << 30));
}

}  // namespace

absl::Status GrpcPortOptions::Validate() const {
  auto bad = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("federation client: ", message));
  };
  if (target.empty()) return bad("the server target is required");
  if (!tls_server_name.empty() && tls_ca_file.empty()) {
    return bad("tls_server_name needs tls_ca_file (it applies to TLS only)");
  }
  if (call_timeout <= absl::ZeroDuration()) return bad("call_timeout must be > 0");
  if (max_message_bytes < 4096 || max_message_bytes > kMaxBytesLimit) {
    return bad("max_message_bytes must be in [4096, 1 GiB]");
  }
  if (max_download_bytes < 1 || max_download_bytes > kMaxBytesLimit) {
    return bad("max_download_bytes must be in [1, 1 GiB]");
  }
  if (reconnect_backoff_initial <= absl::ZeroDuration() ||
      reconnect_backoff_max < reconnect_backoff_initial) {
    return bad("reconnect backoff must have 0 < initial <= max");
  }
  if (download_streams < 1 || download_streams > 100) {
    return bad("download_streams must be in [1, 100]");
  }
  return absl::OkStatus();
}

namespace {
// How long a call on a channel that is not connected waits for it to connect (see Call).
constexpr absl::Duration kConnectWait = absl::Seconds(1);
}  // namespace

struct GrpcPort::Impl {
  GrpcPortOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Federation::Stub> stub;

  absl::Mutex mu;
  absl::flat_hash_set<grpc::ClientContext*> active ABSL_GUARDED_BY(mu);
  // Downloads cut short, by name ("backbone", or the module's): the version asked (with
  // descriptor or not) and the verified chunks received.
  struct Partial {
    std::string version;
    std::unique_ptr<ChunkAssembler> assembler;
  };
  std::map<std::string, Partial> partials ABSL_GUARDED_BY(mu);
  DownloadStats download_stats ABSL_GUARDED_BY(mu);
  // The same on disk, for a later process (options.partial_downloads_dir; null: none).
  std::unique_ptr<PartialDownloadStore> kept;

  // A call's context: token, deadline, and registration for CancelPendingCalls while it lives.
  class Call {
   public:
    explicit Call(Impl& impl) : impl_(impl) {
      if (!impl.options.token.empty()) {
        context_.AddMetadata("authorization", absl::StrCat("Bearer ", impl.options.token));
      }
      const absl::Time deadline = absl::Now() + impl.options.call_timeout;
      context_.set_deadline(absl::ToChronoTime(deadline));
      // A channel that lost its server reports TRANSIENT_FAILURE until a new connection is up,
      // and calls made then fail at once without polling: its connection attempts, made in the
      // background, would progress only at the backup poller's pace (every 5 s, one handshake
      // step at a time). Waiting here polls the attempt, so a restarted server is found at the
      // next call; a server still down costs this call kConnectWait before it fails.
      if (impl.channel->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
        const absl::Time wait_until = std::min(deadline, absl::Now() + kConnectWait);
        impl.channel->WaitForConnected(absl::ToChronoTime(wait_until));
      }
      absl::MutexLock lock(&impl_.mu);
      impl_.active.insert(&context_);
    }
    ~Call() {
      absl::MutexLock lock(&impl_.mu);
      impl_.active.erase(&context_);
    }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    grpc::ClientContext* context() { return &context_; }

   private:
    Impl& impl_;
    grpc::ClientContext context_;
  };
};

namespace {

// Reads a chunk stream to its end into `assembler`. On a bad chunk the call is cancelled and the
// assembler's error (not the CANCELLED that follows) is returned; otherwise the stream's status.
// `verified` (may be null) runs after each chunk the assembler took.
absl::Status ReadStream(grpc::ClientContext* context, grpc::ClientReader<v1::Chunk>& reader,
                        ChunkAssembler& assembler, const std::function<void()>& verified) {
  v1::Chunk chunk;
  absl::Status local = absl::OkStatus();
  while (reader.Read(&chunk)) {
    if (!local.ok()) continue;  // drain what is already in flight
    local = assembler.Add(chunk);
    if (!local.ok()) {
      context->TryCancel();
    } else if (verified) {
      verified();
    }
  }
  const grpc::Status status = reader.Finish();
  if (!local.ok()) return local;
  return FromGrpc(status);
}

// A stream that a flaky link or a slow one ended early; what it delivered is good.
bool CutShort(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
}

}  // namespace

GrpcPort::GrpcPort(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GrpcPort::~GrpcPort() = default;

absl::StatusOr<std::unique_ptr<GrpcPort>> GrpcPort::Create(const GrpcPortOptions& options,
                                                           base::FileSystem& fs) {
  GrpcPortOptions in_memory = options;
  in_memory.partial_downloads_dir.clear();
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<GrpcPort> port,
                         Create(in_memory, static_cast<const base::FileSystem&>(fs)));
  if (!options.partial_downloads_dir.empty()) {
    port->impl_->options.partial_downloads_dir = options.partial_downloads_dir;
    port->impl_->kept = std::make_unique<PartialDownloadStore>(fs, options.partial_downloads_dir);
  }
  return port;
}

absl::StatusOr<std::unique_ptr<GrpcPort>> GrpcPort::Create(const GrpcPortOptions& options,
                                                           const base::FileSystem& fs) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  if (!options.partial_downloads_dir.empty()) {
    return absl::InvalidArgumentError(
        "federation client: partial_downloads_dir needs a file system the port may write");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ClampToInt(options.reconnect_backoff_initial));
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left at gRPC's 20 s: despite its name it is the least
  // time a connection attempt is given (TCP, TLS, HTTP/2 settings). Cut to the backoff, attempts
  // made while calls fail fast expired before anything polled them (the synchronous API polls
  // only inside a call, the backup poller every 5 s), and a device never found a restarted server.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ClampToInt(options.reconnect_backoff_max));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    FEDCL_ASSIGN_OR_RETURN(ssl.pem_root_certs, fs.ReadFile(options.tls_ca_file, 1 << 20));
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  }
  impl->channel = grpc::CreateCustomChannel(options.target, credentials, args);
  if (impl->channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create a channel to '", options.target, "'"));
  }
  impl->stub = v1::Federation::NewStub(impl->channel);
  return std::unique_ptr<GrpcPort>(new GrpcPort(std::move(impl)));
}

absl::StatusOr<device::JoinResult> GrpcPort::Join(fl::ClientId client, absl::string_view software) {
  v1::JoinRequest request;
  request.set_client_id(client);
  request.mutable_capabilities()->set_software(std::string(software));
  request.mutable_capabilities()->set_max_message_bytes(impl_->options.max_message_bytes);
  v1::JoinResponse response;
  Impl::Call call(*impl_);
  FEDCL_RETURN_IF_ERROR(FromGrpc(impl_->stub->Join(call.context(), request, &response)));
  device::JoinResult result;
  result.client_id = response.client_id();
  result.enrolled_round = response.enrolled_round();
  FEDCL_ASSIGN_OR_RETURN(result.server, ServerInfoFromProto(response.server()));
  return result;
}

absl::StatusOr<fl::WorkAssignment> GrpcPort::GetWork(fl::ClientId client,
                                                     absl::Span<const fl::ModuleVersion> held) {
  v1::GetWorkRequest request;
  request.set_client_id(client);
  for (const fl::ModuleVersion& h : held) {
    v1::ModuleVersion* version = request.add_held();
    version->set_name(h.name);
    version->set_version(h.version);
  }
  v1::GetWorkResponse response;
  Impl::Call call(*impl_);
  FEDCL_RETURN_IF_ERROR(FromGrpc(impl_->stub->GetWork(call.context(), request, &response)));
  return WorkFromProto(response);
}

absl::StatusOr<std::string> GrpcPort::Download(const std::string& name, const std::string& version,
                                               const std::string& what, const OpenStream& open) {
  std::unique_ptr<ChunkAssembler> assembler;
  {
    absl::MutexLock lock(&impl_->mu);
    auto it = impl_->partials.find(name);
    if (it != impl_->partials.end()) {
      if (it->second.version == version) assembler = std::move(it->second.assembler);
      impl_->partials.erase(it);  // taken, or of another version: not wanted any more
    }
  }
  auto fresh = [&] {
    return std::make_unique<ChunkAssembler>(what, impl_->options.max_download_bytes);
  };
  PartialDownloadStore* kept = impl_->kept.get();
  if (assembler == nullptr && kept != nullptr) {
    // What an earlier process verified and kept (or nothing: a damaged or other version's
    // partial is deleted).
    const int64_t discarded = kept->discarded();
    assembler = kept->Load(name, version, what, impl_->options.max_download_bytes);
    absl::MutexLock lock(&impl_->mu);
    impl_->download_stats.restored_partials += assembler != nullptr ? 1 : 0;
    impl_->download_stats.discarded_partials += kept->discarded() - discarded;
  }
  if (assembler == nullptr) assembler = fresh();
  // Verified bytes go to disk every kPersistEveryBytes (a kill loses at most that much), and
  // whatever is left when a call ends short.
  constexpr int64_t kPersistEveryBytes = 256 << 10;
  auto persist = [&](int64_t min_new_bytes) {
    if (kept != nullptr) kept->Persist(name, version, *assembler, min_new_bytes).IgnoreError();
  };
  const std::function<void()> after_chunk =
      kept == nullptr ? std::function<void()>() : [&] { persist(kPersistEveryBytes); };
  absl::Status status;
  for (int stream = 0; stream < impl_->options.download_streams; ++stream) {
    const int64_t offset = assembler->received_bytes();
    if (offset > 0) {
      assembler->ResumeStream();
      absl::MutexLock lock(&impl_->mu);
      ++impl_->download_stats.resumed_streams;
      impl_->download_stats.resumed_bytes += offset;
      impl_->download_stats.last_resume_offset = offset;
    }
    {
      Impl::Call call(*impl_);
      std::unique_ptr<grpc::ClientReader<v1::Chunk>> reader = open(call.context(), offset);
      status = ReadStream(call.context(), *reader, *assembler, after_chunk);
    }
    // A stream cut after its last chunk still delivered the whole payload.
    if (status.ok() || (CutShort(status) && assembler->complete())) {
      if (kept != nullptr) kept->Remove(name);  // done, or damaged: nothing to resume either way
      return assembler->Finish();
    }
    if (assembler->payload_changed()) {
      if (kept != nullptr) kept->Remove(name);
      assembler = fresh();  // the server's payload changed under us: start again
      continue;
    }
    // A stream that delivered nothing: the server or the link is down; retrying now is futile.
    if (!CutShort(status) || assembler->received_bytes() == offset) break;
  }
  // Kept for the next call: what a cut stream verified, or a cancelled one (the app stopped the
  // sync; its next one continues).
  if ((CutShort(status) || absl::IsCancelled(status)) && assembler->received_bytes() > 0) {
    persist(0);
    absl::MutexLock lock(&impl_->mu);
    impl_->partials[name] = {version, std::move(assembler)};
  } else if (kept != nullptr && !CutShort(status) && !absl::IsCancelled(status)) {
    kept->Remove(name);  // refused or damaged: resuming it would fail the same way
  }
  return status;
}

GrpcPort::DownloadStats GrpcPort::download_stats() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->download_stats;
}

absl::StatusOr<std::string> GrpcPort::DownloadBackbone(fl::ClientId client) {
  return Download("backbone checkpoint", "", "backbone",
                  [&](grpc::ClientContext* context, int64_t offset) {
                    v1::DownloadBackboneRequest request;
                    request.set_client_id(client);
                    request.set_offset(offset);
                    return impl_->stub->DownloadBackbone(context, request);
                  });
}

absl::StatusOr<device::DownloadedModule> GrpcPort::DownloadModule(fl::ClientId client,
                                                                  const std::string& name,
                                                                  int64_t version,
                                                                  bool with_descriptor) {
  FEDCL_ASSIGN_OR_RETURN(
      std::string bytes,
      Download(absl::StrCat("module:", name), absl::StrCat(version, with_descriptor ? "+d" : ""),
               absl::StrCat("module '", name, "' version ", version),
               [&](grpc::ClientContext* context, int64_t offset) {
                 v1::DownloadModuleRequest request;
                 request.set_client_id(client);
                 request.set_name(name);
                 request.set_version(version);
                 request.set_with_descriptor(with_descriptor);
                 request.set_offset(offset);
                 return impl_->stub->DownloadModule(context, request);
               }));
  return ParseModulePayload(bytes, name, version);
}

absl::StatusOr<fl::SubmitResult> GrpcPort::SubmitUpdate(fl::ClientId client, int64_t round,
                                                        const fl::LocalUpdate& update,
                                                        int64_t chunk_bytes) {
  if (chunk_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("chunk size ", chunk_bytes, " must be > 0"));
  }
  v1::UpdateChunk chunk;
  std::string data;
  FEDCL_RETURN_IF_ERROR(EncodeUpdate(client, round, update, chunk.mutable_header(), &data));
  v1::SubmitUpdateResponse response;
  Impl::Call call(*impl_);
  std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer =
      impl_->stub->SubmitUpdate(call.context(), &response);
  // A failed write means the server has already finished the call (it refused the header, or
  // the connection dropped): stop writing and let Finish report why.
  bool ok = writer->Write(chunk);
  for (size_t offset = 0; ok && offset < data.size(); offset += static_cast<size_t>(chunk_bytes)) {
    chunk.set_data(data.data() + offset,
                   std::min(data.size() - offset, static_cast<size_t>(chunk_bytes)));
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  FEDCL_RETURN_IF_ERROR(FromGrpc(writer->Finish()));
  fl::SubmitResult result;
  result.round = response.round();
  result.duplicate = response.duplicate();
  result.weight = response.weight();
  result.clipped = response.clipped();
  return result;
}

absl::Status GrpcPort::Leave(fl::ClientId client, bool permanent) {
  v1::LeaveRequest request;
  request.set_client_id(client);
  request.set_permanent(permanent);
  v1::LeaveResponse response;
  Impl::Call call(*impl_);
  return FromGrpc(impl_->stub->Leave(call.context(), request, &response));
}

absl::StatusOr<fl::ProposalResult> GrpcPort::ProposeModule(const fl::ModuleProposal& proposal) {
  v1::ProposeModuleRequest request;
  proto::ToProto(proposal, &request);
  v1::ProposeModuleResponse response;
  Impl::Call call(*impl_);
  FEDCL_RETURN_IF_ERROR(FromGrpc(impl_->stub->ProposeModule(call.context(), request, &response)));
  return fl::ProposalResult{.module_id = response.module_id(),
                            .name = response.name(),
                            .merged = response.merged(),
                            .divergence = response.divergence()};
}

absl::StatusOr<bool> GrpcPort::AttachDescriptor(fl::ClientId client, const std::string& name,
                                                const nn::ParameterSet& descriptor) {
  v1::AttachDescriptorRequest request;
  request.set_client_id(client);
  request.set_name(name);
  proto::ToProto(descriptor, request.mutable_descriptor_tensors());
  v1::AttachDescriptorResponse response;
  Impl::Call call(*impl_);
  FEDCL_RETURN_IF_ERROR(
      FromGrpc(impl_->stub->AttachDescriptor(call.context(), request, &response)));
  return response.attached();
}

absl::StatusOr<v1::GetStatusResponse> GrpcPort::GetStatus() {
  v1::GetStatusRequest request;
  v1::GetStatusResponse response;
  Impl::Call call(*impl_);
  FEDCL_RETURN_IF_ERROR(FromGrpc(impl_->stub->GetStatus(call.context(), request, &response)));
  return response;
}

absl::StatusOr<int64_t> GrpcPort::ReportShard(int64_t round, int shard, int num_shards) {
  v1::ReportShardRequest request;
  request.set_round(round);
  request.set_shard(shard);
  request.set_num_shards(num_shards);
  v1::ReportShardResponse response;
  Impl::Call call(*impl_);
  FEDCL_RETURN_IF_ERROR(FromGrpc(impl_->stub->ReportShard(call.context(), request, &response)));
  return response.round();
}

void GrpcPort::CancelPendingCalls() {
  absl::MutexLock lock(&impl_->mu);
  for (grpc::ClientContext* context : impl_->active) context->TryCancel();
}

}  // namespace fedcl::proto
