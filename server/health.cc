#include "server/health.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace fedcl::server {

absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                absl::Duration timeout) {
  // The request (an empty service name) is zero bytes and the reply is one varint field,
  // `status = N`: no generated code needed.
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  auto call = generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &queue);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!queue.Next(&tag, &ok) || !ok) return absl::UnavailableError("health call failed");
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::DataLossError("unreadable health reply");
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // UNKNOWN is the default value and is not sent
  if (bytes.size() != 2 || bytes[0] != 0x08) return absl::DataLossError("unexpected health reply");
  return static_cast<int>(bytes[1]);
}

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& address) {
  grpc::EnableDefaultHealthCheckService(true);
  auto health = std::unique_ptr<HealthServer>(new HealthServer());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  health->server_ = builder.BuildAndStart();
  if (health->server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve health on '", address, "'"));
  }
  health->address_ = absl::StrCat(address.substr(0, address.rfind(':')), ":", port);
  health->SetServing(true);
  return health;
}

HealthServer::~HealthServer() {
  if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

void HealthServer::SetServing(bool serving) {
  if (grpc::HealthCheckServiceInterface* service = server_->GetHealthCheckService())
    service->SetServingStatus(serving);
}

}  // namespace fedcl::server
