// The standard gRPC health service (grpc.health.v1.Health) on a port of its own, and a client
// for it, so that probes need no credentials.
//
// fedcl-server serves the health service on its main port too, but that port speaks TLS and
// Kubernetes' native gRPC probes cannot; an exec probe would need the CA and a process per probe.
// So `--health_listen` opens a second, plaintext port that serves nothing but the health status
// (SERVING once the federation service is up, NOT_SERVING while shutting down), and
// `fedcl-server --probe=HOST:PORT` asks it for Docker's HEALTHCHECK or any exec probe.
#ifndef FEDCL_SERVER_HEALTH_H_
#define FEDCL_SERVER_HEALTH_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"

namespace fedcl::server {

// grpc.health.v1.Health/Check for the whole server ("" service) through a generic stub: 1 =
// SERVING, 2 = NOT_SERVING; Unavailable if the call fails.
absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                absl::Duration timeout);

class HealthServer {
 public:
  // Listens on `address` (port 0 picks one), plaintext, serving only the health service.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& address);
  ~HealthServer();
  void SetServing(bool serving);
  const std::string& address() const { return address_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_HEALTH_H_
