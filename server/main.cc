// fedcl-server: the federated aggregation server.
//
//   fedcl-server --config=server.textproto --listen=0.0.0.0:50051
//   fedcl-server --config=server.textproto --check_config     # validate and exit
//   fedcl-server --config=... --health_listen=0.0.0.0:8081      # plaintext health-only port
//   fedcl-server --probe=127.0.0.1:8081                          # exit 0 iff it says SERVING
//
// The configuration (fedcl.v1.ServerConfig, text format; see proto/fedcl/v1/server_config.proto
// and the README) is validated before anything starts. The server prints
// "listening on HOST:PORT" once it serves (port 0 picks a free port) and runs until SIGINT or
// SIGTERM, or until its state storage fails (exit status 1).
#include <malloc.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "core/base/clock.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "server/federation_server.h"
#include "server/health.h"
#include "server/server_config.h"

ABSL_FLAG(std::string, config, "",
          "Server configuration file (text-format fedcl.v1.ServerConfig).");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "Address to serve on, host:port (port 0 = any).");
ABSL_FLAG(std::string, state_dir, "", "Overrides the config's state_dir.");
ABSL_FLAG(std::string, backbone, "", "Overrides the config's backbone_checkpoint.");
ABSL_FLAG(std::string, tokens_file, "", "Overrides the config's tokens_file.");
ABSL_FLAG(std::string, tls_cert, "", "Overrides the config's tls.cert_file (PEM).");
ABSL_FLAG(std::string, tls_key, "", "Overrides the config's tls.key_file (PEM).");
ABSL_FLAG(bool, check_config, false, "Validate the configuration and exit.");
ABSL_FLAG(std::string, health_listen, "",
          "Also serve the standard gRPC health service, and nothing else, in plaintext on this "
          "host:port (for Kubernetes gRPC probes, which cannot speak TLS); empty = off.");
ABSL_FLAG(std::string, probe, "",
          "Probe mode: ask the health port at this host:port and exit 0 if the server is "
          "SERVING, 1 otherwise (Docker HEALTHCHECK, exec probes).");

namespace {

// SIGINT and SIGTERM are blocked in every thread and taken by one waiting thread, which can then
// do what a signal handler may not (lock, log, shut the server down).
sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

// Every round allocates and frees buffers of D floats (the closed modules' copies, the pool file's
// serialization) and gRPC reads each upload into fresh buffers. glibc would map and unmap each
// such buffer (anything over 128 kB, a threshold it moves only part of the way), and the kernel
// would zero its pages again at every first touch: a page fault per 4 kB, a tenth of the server's
// CPU per update at D = 1M. Kept on the heap up to 32 MiB (glibc's largest threshold) and not
// trimmed back, they are reused instead; the heap then stays at its peak, which the upload slots
// already bound to O(D).
//
// One arena: glibc gives threads arenas of their own and may unmap a thread arena's heap once it
// falls empty (heap_trim), whatever the trim threshold, so gRPC's threads faulted their read
// buffers in again. With one arena, 7-11% less server CPU per update at D = 1M (8 and 32 clients,
// docs/performance.md); malloc and free stayed under 2% of the server's CPU, so its lock is cheap.
void KeepLargeBuffersOnTheHeap() {
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  KeepLargeBuffersOnTheHeap();
  if (!fedcl::base::ParseCommandLine(
          argc, argv, "fedcl-server",
          "Federated aggregation server.\n  fedcl-server --config=FILE [--listen=HOST:PORT] "
          "[--health_listen=HOST:PORT]\n  fedcl-server --probe=HOST:PORT",
          "server/")) {
    return 2;
  }
  if (!absl::GetFlag(FLAGS_probe).empty()) {
    auto health = fedcl::server::CheckHealth(
        grpc::CreateChannel(absl::GetFlag(FLAGS_probe), grpc::InsecureChannelCredentials()),
        absl::Seconds(3));
    if (health.ok() && *health == 1) {
      std::printf("SERVING\n");
      return 0;
    }
    std::printf("%s\n",
                health.ok() ? "NOT_SERVING" : std::string(health.status().message()).c_str());
    return 1;
  }
  // Abseil's mutex deadlock detector (left on in Debian's build) costs a graph update per lock;
  // fedcl's lock order is fixed and checked by the thread-safety analysis instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  fedcl::base::FileSystem& fs = fedcl::base::FileSystem::Default();
  fedcl::base::LogSink& log = fedcl::base::LogSink::Stderr();
  if (absl::GetFlag(FLAGS_config).empty()) {
    std::fprintf(stderr, "fedcl-server: --config is required (see --help)\n");
    return 2;
  }
  fedcl::server::ServerConfigOverrides overrides;
  overrides.state_dir = absl::GetFlag(FLAGS_state_dir);
  overrides.backbone_checkpoint = absl::GetFlag(FLAGS_backbone);
  overrides.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  overrides.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  overrides.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  auto config = fedcl::server::LoadServerConfig(fs, absl::GetFlag(FLAGS_config), overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "fedcl-server: %s\n", config.status().ToString().c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_check_config)) {
    std::printf("configuration OK\n");
    return 0;
  }
  // Before any thread starts, so every thread inherits the mask.
  sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto server = fedcl::server::FederationServer::Start(*config, absl::GetFlag(FLAGS_listen), fs,
                                                       fedcl::base::Clock::Real(), log);
  if (!server.ok()) {
    std::fprintf(stderr, "fedcl-server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::thread signal_waiter([&signals, server = server->get()] {
    int signal = 0;
    sigwait(&signals, &signal);
    server->Shutdown();  // also reached by pthread_kill below when the server stops on its own
  });
  std::unique_ptr<fedcl::server::HealthServer> health;
  if (!absl::GetFlag(FLAGS_health_listen).empty()) {
    auto started = fedcl::server::HealthServer::Start(absl::GetFlag(FLAGS_health_listen));
    if (!started.ok()) {
      std::fprintf(stderr, "fedcl-server: %s\n", started.status().ToString().c_str());
      (*server)->Shutdown();
      pthread_kill(signal_waiter.native_handle(), SIGTERM);
      signal_waiter.join();
      return 1;
    }
    health = *std::move(started);
    std::cout << "health on " << health->address() << std::endl;
  }
  std::cout << "listening on " << (*server)->address() << std::endl;
  absl::Status status = (*server)->Wait();
  if (health != nullptr) health->SetServing(false);
  pthread_kill(signal_waiter.native_handle(), SIGTERM);  // release the waiter if still waiting
  signal_waiter.join();
  if (!status.ok()) {
    std::fprintf(stderr, "fedcl-server: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
