// fedcl-server: the federated aggregation server.
//
//   fedcl-server --config=server.textproto --listen=0.0.0.0:50051
//   fedcl-server --config=server.textproto --check_config     # validate and exit
//
// The configuration (fedcl.v1.ServerConfig, text format; see proto/fedcl/v1/server_config.proto
// and the README) is validated before anything starts. The server prints
// "listening on HOST:PORT" once it serves (port 0 picks a free port) and runs until SIGINT or
// SIGTERM, or until its state storage fails (exit status 1).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "core/base/clock.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "server/federation_server.h"
#include "server/server_config.h"

ABSL_FLAG(std::string, config, "",
          "Server configuration file (text-format fedcl.v1.ServerConfig).");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "Address to serve on, host:port (port 0 = any).");
ABSL_FLAG(std::string, state_dir, "", "Overrides the config's state_dir.");
ABSL_FLAG(std::string, tokens_file, "", "Overrides the config's tokens_file.");
ABSL_FLAG(bool, check_config, false, "Validate the configuration and exit.");

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

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Federated aggregation server.\n  fedcl-server --config=FILE [--listen=HOST:PORT]");
  absl::ParseCommandLine(argc, argv);
  // Abseil's mutex deadlock detector (left on in Debian's build) costs a graph update per lock;
  // fedcl's lock order is fixed and checked by the thread-safety analysis instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  fedcl::base::FileSystem& fs = fedcl::base::FileSystem::Default();
  fedcl::base::LogSink& log = fedcl::base::LogSink::Stderr();
  if (absl::GetFlag(FLAGS_config).empty()) {
    std::fprintf(stderr, "fedcl-server: --config is required (see --help)\n");
    return 2;
  }
  auto config = fedcl::server::LoadServerConfig(fs, absl::GetFlag(FLAGS_config));
  if (config.ok()) {
    if (!absl::GetFlag(FLAGS_state_dir).empty())
      config->set_state_dir(absl::GetFlag(FLAGS_state_dir));
    if (!absl::GetFlag(FLAGS_tokens_file).empty()) {
      config->set_tokens_file(absl::GetFlag(FLAGS_tokens_file));
    }
  }
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
  std::cout << "listening on " << (*server)->address() << std::endl;
  absl::Status status = (*server)->Wait();
  pthread_kill(signal_waiter.native_handle(), SIGTERM);  // release the waiter if still waiting
  signal_waiter.join();
  if (!status.ok()) {
    std::fprintf(stderr, "fedcl-server: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
