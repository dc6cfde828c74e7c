// The one place where absl::Status becomes grpc::Status. The codes share their numbering (both
// follow google.rpc.Code), so the mapping keeps the code and the message.
#ifndef FEDCL_SERVER_GRPC_STATUS_H_
#define FEDCL_SERVER_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace fedcl::server {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_GRPC_STATUS_H_
