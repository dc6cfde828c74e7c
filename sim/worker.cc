#include "sim/worker.h"

#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/federation_client.h"
#include "core/base/status_macros.h"
#include "core/fl/local_trainer.h"
#include "google/protobuf/text_format.h"
#include "proto/checkpoint.h"
#include "proto/fedcl/v1/server_config.pb.h"
#include "proto/federation_convert.h"
#include "sim/client_data.h"
#include "sim/participation.h"
#include "sim/round_runner.h"

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

absl::Status EmitServerConfig(const Scenario& scenario, const SimulationInputs& inputs,
                              const ServerConfigRequest& request, base::FileSystem& fs) {
  const MethodSpec* method = nullptr;
  for (const MethodSpec& m : scenario.methods) {
    if (m.label == request.method) method = &m;
  }
  if (method == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("method '", request.method, "' is not one of the scenario's"));
  }
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(request.dir));
  // The model the in-process run starts from; the server builds its initial modules from it with
  // the same seed, so both runs start from identical values.
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> model,
                         MakeModel(scenario, inputs, request.seed));
  const std::string checkpoint = base::JoinPath(request.dir, "initial.ckpt");
  proto::CheckpointMetadata metadata;
  metadata.created_by = absl::StrCat("fedcl-sim initial model, seed ", request.seed);
  FEDCL_RETURN_IF_ERROR(proto::SaveCheckpoint(fs, checkpoint, *model, {}, metadata));

  v1::ServerConfig config;
  config.set_state_dir(request.state_dir);
  config.set_backbone_checkpoint(checkpoint);
  config.set_num_classes(inputs.train.num_classes);
  *config.mutable_module() = scenario.config.module();
  config.mutable_aggregator()->set_kind(method->aggregator.name);
  config.mutable_aggregator()->set_global_learning_rate(method->aggregator.global_learning_rate);
  config.mutable_aggregator()->set_fedau_cutoff(method->aggregator.fedau_cutoff);
  config.mutable_aggregator()->set_options(method->aggregator.options);
  proto::ToProto(method->recipe, config.mutable_recipe());
  config.mutable_round()->set_shards(request.shards);
  config.mutable_round()->set_min_participants(0);
  // Rounds close when every shard reported; the deadline only has to stay out of the way, even
  // across a server restart (Recover closes a round whose deadline passed).
  config.mutable_round()->set_duration_ms(int64_t{365} * 24 * 3600 * 1000);
  config.set_tokens_file(request.tokens_file);
  config.mutable_tls()->set_cert_file(request.tls_cert_file);
  config.mutable_tls()->set_key_file(request.tls_key_file);
  config.mutable_evaluation()->set_data_dir(scenario.config.data().dir());
  config.mutable_evaluation()->set_split("test");
  config.mutable_evaluation()->set_max_samples(scenario.config.data().max_test_samples());
  config.mutable_evaluation()->set_every_rounds(scenario.config.eval_every());
  config.set_seed(request.seed);
  // Journal accepted updates so a restarted server resumes the open round with them, but without
  // an fsync per update: a simulation survives a server crash, not a power cut.
  config.mutable_journal()->set_sync("normal");
  FEDCL_ASSIGN_OR_RETURN(std::shared_ptr<const fl::AggregationRule> rule,
                         fl::CreateAggregationRule(method->aggregator));
  if (rule->needs_participation_probability()) {
    FEDCL_ASSIGN_OR_RETURN(ClientData data,
                           ClientData::Create(scenario, inputs.train, request.seed));
    const std::vector<float> p = data.Probabilities(scenario, request.seed);
    for (size_t n = 0; n < p.size(); ++n) (*config.mutable_participation_probability())[n] = p[n];
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(config, &text);
  return fs.WriteFileAtomically(
      base::JoinPath(request.dir, "server.textproto"),
      absl::StrCat("# Generated by fedcl-sim --emit_server_config for scenario '",
                   scenario.config.name(), "', method ", request.method, ", seed ", request.seed,
                   ", ", request.shards, " shard(s).\n", text));
}

}  // namespace fedcl::sim
