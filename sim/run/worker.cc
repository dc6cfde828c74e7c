#include "sim/run/worker.h"

#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/base/status_macros.h"
#include "proto/grpc_port.h"
#include "sim/run/round_runner.h"
#include "sim/world/client_data.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

// A fedcl-server over gRPC, with each module downloaded once per version and shared by the
// shard's participants (a shard runs thousands of virtual devices on one connection).
class SharedDownloadsPort final : public device::ForwardingPort {
 public:
  explicit SharedDownloadsPort(proto::GrpcPort& port) : ForwardingPort(port) {}

  absl::StatusOr<device::DownloadedModule> DownloadModule(fl::ClientId client,
                                                          const std::string& name, int64_t version,
                                                          bool with_descriptor) override {
    if (with_descriptor) return inner().DownloadModule(client, name, version, true);
    {
      absl::MutexLock lock(&mu_);
      auto it = cache_.find(name);
      if (it != cache_.end() && it->second.version == version) return it->second;
    }
    FEDCL_ASSIGN_OR_RETURN(device::DownloadedModule downloaded,
                           inner().DownloadModule(client, name, version));
    absl::MutexLock lock(&mu_);
    cache_[name] = downloaded;
    return downloaded;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, device::DownloadedModule> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::pair<uint32_t, uint32_t> ShardRange(int num_clients, int shard, int shards) {
  const auto bound = [&](int s) {
    return static_cast<uint32_t>(static_cast<int64_t>(num_clients) * s / shards);
  };
  return {bound(shard), bound(shard + 1)};
}

absl::Status RunWorker(const Scenario& scenario, const SimulationInputs& inputs,
                       const WorkerOptions& options, const base::FileSystem& fs,
                       RunObserver* observer) {
  if (options.shards < 1 || options.shard < 0 || options.shard >= options.shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", options.shard, " of ", options.shards, " does not exist"));
  }
  const PatternSpec* pattern = nullptr;
  for (const PatternSpec& p : scenario.patterns) {
    if (p.name == options.pattern) pattern = &p;
  }
  if (pattern == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("pattern '", options.pattern, "' is not one of the scenario's"));
  }
  if (inputs.trace && inputs.trace->unit() == TraceUnit::kSeconds) {
    return absl::FailedPreconditionError(
        "traces in seconds need one global virtual clock: run them in one process");
  }
  proto::GrpcPortOptions transport_options;
  transport_options.target = options.server;
  transport_options.tls_ca_file = options.tls_ca_file;
  transport_options.tls_server_name = options.tls_server_name;
  transport_options.token = options.token;
  FEDCL_ASSIGN_OR_RETURN(auto transport, proto::GrpcPort::Create(transport_options, fs));

  const auto [first, last] = ShardRange(scenario.num_clients(), options.shard, options.shards);
  device::ServerInfo server;
  for (uint32_t n = first; n < last; ++n) {
    FEDCL_ASSIGN_OR_RETURN(device::JoinResult joined, transport->Join(n, "fedcl-sim worker"));
    server = joined.server;
  }
  FEDCL_ASSIGN_OR_RETURN(ClientData client_data,
                         ClientData::Create(scenario, inputs.train, options.seed));
  FEDCL_ASSIGN_OR_RETURN(
      std::unique_ptr<ParticipationProcess> process,
      ParticipationProcess::Create(*pattern, client_data.Probabilities(scenario, options.seed),
                                   options.seed, inputs.trace ? &*inputs.trace : nullptr));
  // A worker that joins a run in progress (after a restart) replays the earlier rounds' draws,
  // so the Markov chains and cycles are where they would have been.
  // The open round, without GetStatus's list of every client.
  FEDCL_ASSIGN_OR_RETURN(const int64_t open_round,
                         transport->ReportShard(-1, options.shard, options.shards));
  for (int64_t t = 0; t < open_round; ++t) process->Advance(t, 0.0, first, last);

  SharedDownloadsPort port(*transport);
  RoundRunner runner(scenario, inputs, client_data, options.seed, scenario.config.threads(),
                     server);
  for (int64_t t = open_round; t < scenario.rounds(); ++t) {
    process->Advance(t, 0.0, first, last);
    const std::vector<uint32_t> participants = process->Participants(first, last);
    FEDCL_ASSIGN_OR_RETURN(RoundOutcome outcome, runner.Run(port, participants, t, 0.0));
    // Done with this round; wait until every shard is and the server has closed it.
    while (true) {
      FEDCL_ASSIGN_OR_RETURN(int64_t open,
                             transport->ReportShard(t, options.shard, options.shards));
      if (open > t) break;
      absl::SleepFor(options.poll_interval);
    }
    if (observer != nullptr) observer->OnRound(t + 1, outcome.counted);
  }
  return absl::OkStatus();
}

}  // namespace fedcl::sim
