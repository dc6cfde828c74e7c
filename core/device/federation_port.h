// The device↔server conversation, without saying how it travels.
//
// A DeviceSession (device_session.h) talks to the server only through this interface. Two
// implementations: InProcessPort (in_process_port.h) calls an fl::Coordinator in the same
// process (the simulators, tests); GrpcPort (proto/grpc_port.h) speaks fedcl.v1 over gRPC (the
// edge SDK, fedcl-client, the simulator's device processes). Everything here is core vocabulary
// (fl::, nn::) and standard or Abseil types.
//
// Error codes are the server's (core/fl/coordinator.h lists what each means): NotFound for an
// unknown client or a module version no longer kept, FailedPrecondition for a revoked client or a
// module trained from a stale version, Aborted for an update to a round that has closed without
// it, OutOfRange for a round that has not opened, InvalidArgument for a malformed request,
// Unauthenticated / PermissionDenied for a bad token, and Unavailable / DeadlineExceeded /
// ResourceExhausted for "retry this call". Transports add DataLoss for a payload damaged in
// transit and Cancelled for a call cancelled by CancelPendingCalls.
#ifndef FEDCL_CORE_DEVICE_FEDERATION_PORT_H_
#define FEDCL_CORE_DEVICE_FEDERATION_PORT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/fl/coordinator.h"
#include "core/fl/round_types.h"
#include "core/nn/model_config.h"
#include "core/nn/parameter_set.h"

namespace fedcl::device {

// The protocol devices speak; a session refuses a server that reports another.
inline constexpr absl::string_view kProtocol = "fedcl.v1";

// What the server says about itself when a client joins (fedcl.v1.ServerInfo).
struct ServerInfo {
  std::string protocol;  // "fedcl.v1"
  // The model every module attaches to (backbone, head, classes).
  nn::ModelConfig model;
  // Hex SHA-256 of the serialized ModelCheckpoint that DownloadBackbone returns.
  std::string backbone_digest;
  // Largest message the server accepts, and the chunk size for streamed payloads.
  int64_t max_message_bytes = 0;
  int64_t chunk_bytes = 0;
};

struct JoinResult {
  fl::ClientId client_id = 0;
  // The round at which the server enrolled the client (the first Join's round, if it remembers).
  int64_t enrolled_round = 0;
  ServerInfo server;
};

// A module as downloaded: what it is, its version and its values.
struct DownloadedModule {
  fl::ModuleSpec spec;
  int64_t version = 0;
  nn::ParameterSet values;
  // A pooled expert's descriptor, when asked for and the pool has one.
  std::optional<nn::ParameterSet> descriptor;
};

// Not thread-safe unless an implementation says so (CancelPendingCalls excepted); a session calls
// it from one thread at a time.
class FederationPort {
 public:
  virtual ~FederationPort() = default;

  // Enrols `client` or re-attaches it (idempotent). `software` describes the client, e.g.
  // "fedcl-client 0.1.0".
  virtual absl::StatusOr<JoinResult> Join(fl::ClientId client, absl::string_view software) = 0;

  // What to do now. `held` lists the module versions the client has installed.
  virtual absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client,
                                                     absl::Span<const fl::ModuleVersion> held) = 0;

  // The backbone: the bytes of a serialized fedcl.v1.ModelCheckpoint, checked against the
  // transfer's size and CRC-32 (DataLoss if damaged).
  virtual absl::StatusOr<std::string> DownloadBackbone(fl::ClientId client) = 0;

  // Module `name` at `version`, which must be the current one (NotFound otherwise); with
  // `with_descriptor`, a pooled expert comes with the descriptor its founder attached (if any).
  virtual absl::StatusOr<DownloadedModule> DownloadModule(fl::ClientId client,
                                                          const std::string& name, int64_t version,
                                                          bool with_descriptor = false) = 0;

  // Submits `update`, trained for `round`: one delta per module, its bytes sent in chunks of at
  // most `chunk_bytes` (ServerInfo.chunk_bytes). Idempotent on (client, round): a repeat is
  // acknowledged with `duplicate` set, also after the round has closed.
  virtual absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                        const fl::LocalUpdate& update,
                                                        int64_t chunk_bytes) = 0;

  // The client stops taking part; with `permanent` it is revoked.
  virtual absl::Status Leave(fl::ClientId client, bool permanent) = 0;

  // Offers an expert the device grew to the server's pool (client and round are the proposal's).
  // The server founds a module or joins the proposal to one for the same shift; either way the
  // device holds it from now on. The default: Unimplemented.
  virtual absl::StatusOr<fl::ProposalResult> ProposeModule(const fl::ModuleProposal& proposal);

  // Gives pool expert `name`, which the client's proposal founded or joined, the descriptor the
  // client trained for it; false if the expert already had one (the first is kept). The
  // default: Unimplemented.
  virtual absl::StatusOr<bool> AttachDescriptor(fl::ClientId client, const std::string& name,
                                                const nn::ParameterSet& descriptor);

  // Makes the calls in flight return soon (Cancelled); later calls run normally. Unlike the
  // other methods this one may be called from any thread. The default does nothing.
  virtual void CancelPendingCalls() {}
};

// A port that passes every call to another one: the base of decorators (a cache, a ledger, a
// port that holds submissions), which override only the calls they change. `inner` must
// outlive it; thread-safe as `inner` is.
class ForwardingPort : public FederationPort {
 public:
  explicit ForwardingPort(FederationPort& inner) : inner_(inner) {}

  absl::StatusOr<JoinResult> Join(fl::ClientId client, absl::string_view software) override {
    return inner_.Join(client, software);
  }
  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client,
                                             absl::Span<const fl::ModuleVersion> held) override {
    return inner_.GetWork(client, held);
  }
  absl::StatusOr<std::string> DownloadBackbone(fl::ClientId client) override {
    return inner_.DownloadBackbone(client);
  }
  absl::StatusOr<DownloadedModule> DownloadModule(fl::ClientId client, const std::string& name,
                                                  int64_t version,
                                                  bool with_descriptor = false) override {
    return inner_.DownloadModule(client, name, version, with_descriptor);
  }
  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                const fl::LocalUpdate& update,
                                                int64_t chunk_bytes) override {
    return inner_.SubmitUpdate(client, round, update, chunk_bytes);
  }
  absl::Status Leave(fl::ClientId client, bool permanent) override {
    return inner_.Leave(client, permanent);
  }
  absl::StatusOr<fl::ProposalResult> ProposeModule(const fl::ModuleProposal& proposal) override {
    return inner_.ProposeModule(proposal);
  }
  absl::StatusOr<bool> AttachDescriptor(fl::ClientId client, const std::string& name,
                                        const nn::ParameterSet& descriptor) override {
    return inner_.AttachDescriptor(client, name, descriptor);
  }
  void CancelPendingCalls() override { inner_.CancelPendingCalls(); }

 protected:
  FederationPort& inner() { return inner_; }

 private:
  FederationPort& inner_;
};

// Codes after which the same call may succeed later (the device keeps what it was sending).
bool IsTransient(const absl::Status& status);

}  // namespace fedcl::device

#endif  // FEDCL_CORE_DEVICE_FEDERATION_PORT_H_
