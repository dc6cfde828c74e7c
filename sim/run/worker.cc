#include "sim/run/worker.h"

#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/federation_client.h"
#include "core/base/status_macros.h"
#include "core/fl/local_trainer.h"
#include "sim/run/round_runner.h"
#include "sim/world/client_data.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

// A fedcl-server over gRPC. Modules are downloaded once per version and shared by the shard's
// participants.
class GrpcEndpoint final : public CoordinatorEndpoint {
 public:
  GrpcEndpoint(client::FederationClient& transport, int64_t chunk_bytes)
      : transport_(transport), chunk_bytes_(chunk_bytes) {}

  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client) override {
    return transport_.GetWork(client, {});
  }

  absl::StatusOr<fl::ModuleSnapshot> GetModule(fl::ClientId client,
                                               const fl::ModuleInfo& info) override {
    {
      absl::MutexLock lock(&mu_);
      auto it = cache_.find(info.spec.name);
      if (it != cache_.end() && it->second.version == info.version) return it->second;
    }
    FEDCL_ASSIGN_OR_RETURN(client::DownloadedModule downloaded,
                           transport_.DownloadModule(client, info.spec.name, info.version));
    fl::ModuleSnapshot snapshot;
    snapshot.spec = downloaded.spec;
    snapshot.version = downloaded.version;
    snapshot.values = std::make_shared<const nn::ParameterSet>(std::move(downloaded.values));
    absl::MutexLock lock(&mu_);
    cache_[info.spec.name] = snapshot;
    return snapshot;
  }

  absl::Status Submit(fl::ClientId client, int64_t round, fl::LocalUpdate& update) override {
    return transport_.SubmitUpdate(client, round, update, chunk_bytes_).status();
  }

 private:
  client::FederationClient& transport_;
  const int64_t chunk_bytes_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, fl::ModuleSnapshot> cache_ ABSL_GUARDED_BY(mu_);
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
  client::FederationClientOptions transport_options;
  transport_options.target = options.server;
  transport_options.tls_ca_file = options.tls_ca_file;
  transport_options.tls_server_name = options.tls_server_name;
  transport_options.token = options.token;
  FEDCL_ASSIGN_OR_RETURN(auto transport, client::FederationClient::Create(transport_options, fs));

  const auto [first, last] = ShardRange(scenario.num_clients(), options.shard, options.shards);
  int64_t chunk_bytes = 1 << 20;
  for (uint32_t n = first; n < last; ++n) {
    FEDCL_ASSIGN_OR_RETURN(client::JoinResult joined, transport->Join(n, "fedcl-sim worker"));
    chunk_bytes = joined.server.chunk_bytes;
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

  GrpcEndpoint endpoint(*transport, chunk_bytes);
  RoundRunner runner(scenario, inputs, client_data, options.seed, scenario.config.threads());
  for (int64_t t = open_round; t < scenario.rounds(); ++t) {
    process->Advance(t, 0.0, first, last);
    const std::vector<uint32_t> participants = process->Participants(first, last);
    FEDCL_ASSIGN_OR_RETURN(RoundOutcome outcome, runner.Run(endpoint, participants, t, 0.0));
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
