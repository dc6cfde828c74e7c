// fedcl-server assembled: configuration → backbone and initial modules (the served backbone is
// also written to <state_dir>/backbone.ckpt) → durable store →
// coordinator (fresh or recovered) → gRPC service with TLS, tokens, health and reflection → a
// ticker that closes rounds at their deadlines, writes one JSON line per round to
// <state_dir>/metrics.jsonl and evaluates the published modules on a held-out set if configured.
//
//   FEDCL_ASSIGN_OR_RETURN(auto server, server::FederationServer::Start(config, "127.0.0.1:0",
//                                                                       fs, clock, log));
//   std::cout << "listening on " << server->address() << std::endl;
//   server->Wait();   // until Shutdown() or a fatal storage error
//
// Errors at start-up name what was wrong (config field, checkpoint path, state that does not
// match the configured modules, a port that cannot be bound). Thread-safe.
#ifndef FEDCL_SERVER_FEDERATION_SERVER_H_
#define FEDCL_SERVER_FEDERATION_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/base/clock.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "core/data/dataset.h"
#include "core/fl/coordinator.h"
#include "core/nn/model.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"
#include "proto/fedcl/v1/server_config.pb.h"
#include "server/federation_service.h"
#include "server/sqlite_state_store.h"
#include "server/token_auth.h"

namespace fedcl::server {

class FederationServer {
 public:
  // Starts serving on `listen_address` ("host:port"; port 0 picks a free one). `config` must
  // come from LoadServerConfig/ParseServerConfig.
  static absl::StatusOr<std::unique_ptr<FederationServer>> Start(const v1::ServerConfig& config,
                                                                 const std::string& listen_address,
                                                                 base::FileSystem& fs,
                                                                 base::Clock& clock,
                                                                 base::LogSink& log);
  ~FederationServer();

  // "host:port" actually bound.
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // Blocks until Shutdown() is called or the coordinator stops on a storage failure; returns
  // that failure (OK after a requested shutdown).
  absl::Status Wait();
  void Shutdown();

  fl::Coordinator& coordinator() { return *coordinator_; }
  // A channel into this server that bypasses the network: the same service, the same handlers
  // (the service fuzz target and in-process tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // The upload slots, for tests that watch uploads wait, stall and expire.
  const UploadSlots& upload_slots() const { return service_->upload_slots(); }

 private:
  FederationServer(const v1::ServerConfig& config, base::FileSystem& fs, base::Clock& clock,
                   base::LogSink& log);
  absl::Status Init(const std::string& listen_address);
  absl::Status BuildModel(std::vector<fl::StoredModule>* initial);
  absl::Status LoadEvaluationData();
  void TickLoop();
  void Report(const fl::RoundReport& report);
  absl::StatusOr<double> Evaluate();

  const v1::ServerConfig config_;
  base::FileSystem& fs_;
  base::Clock& clock_;
  base::LogSink& log_;
  std::unique_ptr<nn::Model> model_;         // backbone + head, for evaluation and downloads
  std::shared_ptr<const Payload> backbone_;  // serialized checkpoint clients download
  std::string backbone_digest_;
  std::unique_ptr<SqliteStateStore> store_;
  std::unique_ptr<fl::Coordinator> coordinator_;
  std::unique_ptr<TokenAuthenticator> authenticator_;
  std::unique_ptr<FederationService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::string address_;
  int port_ = 0;
  std::unique_ptr<data::Dataset> evaluation_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  std::thread ticker_;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_FEDERATION_SERVER_H_
