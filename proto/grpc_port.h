// The gRPC implementation of device::FederationPort (core/device/federation_port.h), beside the
// service it speaks (fedcl.v1.Federation, proto/fedcl/v1/federation.proto), so that the edge SDK,
// fedcl-client and the simulator's device and worker processes share it.
//
//   proto::GrpcPortOptions options;
//   options.target = "fedcl.example.org:50051";
//   options.tls_ca_file = "/etc/fedcl/ca.pem";
//   options.token = token;                       // sent as `authorization: Bearer <token>`
//   FEDCL_ASSIGN_OR_RETURN(auto client, proto::GrpcPort::Create(options, fs));
//   FEDCL_ASSIGN_OR_RETURN(device::JoinResult joined, client->Join(7, "fedcl-client 0.1.0"));
//   FEDCL_ASSIGN_OR_RETURN(fl::WorkAssignment work, client->GetWork(7, held));
//
// Every call carries the bearer token (if any) and a deadline of `call_timeout`, streams
// included. gRPC status codes become absl::Status codes one to one (both follow google.rpc.Code)
// and the server's message is kept, so a caller reads the codes as core/fl/coordinator.h defines
// them. Downloads are reassembled and checked (offsets, total size, CRC-32; DataLoss when
// damaged); updates are streamed as an UpdateHeader followed by the float32 delta bytes in chunks.
//
// The channel reconnects on its own after the server goes away; its reconnect backoff is bounded
// by the options so a restarted server is found again quickly. A call made while the channel is
// not connected first waits up to a second for it to connect (that wait is what drives the
// connection attempt forward; CancelPendingCalls does not shorten it), then fails UNAVAILABLE if
// the server is still unreachable: retrying is the caller's decision
// (core/device/device_session.h).
//
// Thread-safe: calls may be made concurrently; CancelPendingCalls may be called from any thread.
#ifndef FEDCL_PROTO_GRPC_PORT_H_
#define FEDCL_PROTO_GRPC_PORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/filesystem.h"
#include "core/device/federation_port.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace grpc {
class ClientContext;
template <class R>
class ClientReader;
}  // namespace grpc

namespace fedcl::proto {

struct GrpcPortOptions {
  // The server, as a gRPC target: "host:port", "ipv4:127.0.0.1:50051", "dns:///host:port".
  // Required.
  std::string target;
  // PEM file with the root certificate(s) the server's certificate must chain to; empty connects
  // in plaintext (loopback and tests only).
  std::string tls_ca_file;
  // The name checked against the server's certificate, when it differs from the target's host
  // (e.g. the target is an IP address); empty uses the target's host. TLS only.
  std::string tls_server_name;
  // Bearer token for `authorization: Bearer <token>`; empty sends no authorization.
  std::string token;
  // Deadline of each call, streams included (> 0).
  absl::Duration call_timeout = absl::Seconds(60);
  // Largest gRPC message sent or received, in bytes, in [4096, 1 GiB]; announced at Join.
  int64_t max_message_bytes = int64_t{4} << 20;
  // Largest reassembled download (backbone or module), in bytes, in [1, 1 GiB].
  int64_t max_download_bytes = int64_t{1} << 30;
  // The channel's reconnect backoff after it lost the server: first delay and cap (both > 0,
  // initial <= max).
  absl::Duration reconnect_backoff_initial = absl::Milliseconds(200);
  absl::Duration reconnect_backoff_max = absl::Seconds(10);
  // Streams one download call may use, in [1, 100]: a stream cut short (UNAVAILABLE,
  // DEADLINE_EXCEEDED) after it delivered verified chunks is resumed at once from the last of
  // them. A call that still fails keeps what it received for the next call of the same download.
  int download_streams = 4;
  // Where downloads cut short are kept across restarts (proto/partial_downloads.h), so that a
  // device killed mid-download resumes from its last verified chunk. Empty: in memory only (the
  // port still resumes within its life). Needs Create's writable file system.
  std::string partial_downloads_dir;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

class GrpcPort final : public device::FederationPort {
 public:
  // Builds the channel (it connects lazily, on the first call). Reads `tls_ca_file` through `fs`:
  // its errors pass through (NotFound, ...). InvalidArgument for invalid options.
  static absl::StatusOr<std::unique_ptr<GrpcPort>> Create(const GrpcPortOptions& options,
                                                          const base::FileSystem& fs);
  // The same with a file system it may write: partial downloads are kept in
  // options.partial_downloads_dir (the read-only overload refuses that option).
  static absl::StatusOr<std::unique_ptr<GrpcPort>> Create(const GrpcPortOptions& options,
                                                          base::FileSystem& fs);
  ~GrpcPort() override;

  // Join, GetWork, downloads, SubmitUpdate and Leave as FederationTransport describes. Besides
  // the server's codes: DataLoss for a damaged download; FailedPrecondition for a download larger
  // than max_download_bytes; InvalidArgument for a reply that does not decode (a server speaking
  // another protocol version), and for SubmitUpdate with chunk_bytes <= 0 or an update whose
  // values do not match its layouts. Downloads resume after a cut (download_streams); the port
  // keeps the verified part of one failed download per backbone or module name (of the version
  // asked) until the download completes or another version of that module is asked for.
  absl::StatusOr<device::JoinResult> Join(fl::ClientId client, absl::string_view software) override;
  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client,
                                             absl::Span<const fl::ModuleVersion> held) override;
  absl::StatusOr<std::string> DownloadBackbone(fl::ClientId client) override;
  absl::StatusOr<device::DownloadedModule> DownloadModule(fl::ClientId client,
                                                          const std::string& name, int64_t version,
                                                          bool with_descriptor = false) override;
  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                const fl::LocalUpdate& update,
                                                int64_t chunk_bytes) override;
  absl::Status Leave(fl::ClientId client, bool permanent) override;
  absl::StatusOr<fl::ProposalResult> ProposeModule(const fl::ModuleProposal& proposal) override;
  absl::StatusOr<bool> AttachDescriptor(fl::ClientId client, const std::string& name,
                                        const nn::ParameterSet& descriptor) override;

  // The server's status (round, participants, module versions, FedAU weights). Any valid token
  // may ask.
  absl::StatusOr<v1::GetStatusResponse> GetStatus();
  // Simulator workers: shard `shard` of `num_shards` is done with `round`; returns the round
  // open now (past `round` once every shard has reported it).
  absl::StatusOr<int64_t> ReportShard(int64_t round, int shard, int num_shards);

  // Cancels the calls in flight (they return CANCELLED); later calls run normally.
  void CancelPendingCalls() override;

  // Downloads so far: streams resumed where a cut one stopped, the bytes they did not fetch again
  // because of it, and the offset the last resumed stream started from; partial downloads
  // another port (an earlier process) kept on disk and this one resumed, and kept ones found
  // unusable and deleted.
  struct DownloadStats {
    int64_t resumed_streams = 0;
    int64_t resumed_bytes = 0;
    int64_t last_resume_offset = 0;
    int64_t restored_partials = 0;
    int64_t discarded_partials = 0;
  };
  DownloadStats download_stats() const;

 private:
  struct Impl;
  explicit GrpcPort(std::unique_ptr<Impl> impl);

  // Opens a stream of the payload from byte `offset`.
  using OpenStream = std::function<std::unique_ptr<grpc::ClientReader<v1::Chunk>>(
      grpc::ClientContext* context, int64_t offset)>;
  // One download of payload `name` at `version` (`what` names it in errors): resumed from a kept
  // partial of the same version, in at most options.download_streams streams.
  absl::StatusOr<std::string> Download(const std::string& name, const std::string& version,
                                       const std::string& what, const OpenStream& open);

  std::unique_ptr<Impl> impl_;
};

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_GRPC_PORT_H_
