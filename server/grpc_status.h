// The one place where absl::Status becomes grpc::Status. The codes share their numbering (both
// follow google.rpc.Code), so the mapping keeps the code and the message.
//
// The message travels in a trailer, and a client refuses trailers above its metadata limit (8 KiB
// by default in gRPC): the caller would see RESOURCE_EXHAUSTED instead of the server's code. The
// server's own messages echo client input through fl::EchoInput and stay short; as a net for
// messages composed elsewhere (the coordinator, the proto converters), any message is cut to
// kMaxStatusMessageBytes here, which gRPC's percent-encoding at most triples.
#ifndef FEDCL_SERVER_GRPC_STATUS_H_
#define FEDCL_SERVER_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "core/fl/update_validation.h"
#include "grpcpp/support/status.h"

namespace fedcl::server {

inline constexpr size_t kMaxStatusMessageBytes = 1024;

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      fl::EchoInput(status.message(), kMaxStatusMessageBytes));
}

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_GRPC_STATUS_H_
