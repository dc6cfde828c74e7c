#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "google/protobuf/text_format.h"
#include "proto/checkpoint.h"
#include "proto/fedcl/v1/server_config.pb.h"
#include "proto/federation_convert.h"
#include "proto/fl_config.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"
#include "sim/world/client_data.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

// The model the in-process run starts from; the server builds its initial modules from it with
// the same seed, so both runs start from identical values.
absl::Status WriteInitialModel(const Scenario& scenario, const SimulationInputs& inputs,
                               const ServerConfigRequest& request, const std::string& path,
                               base::FileSystem& fs) {
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> model,
                         MakeModel(scenario, inputs, request.seed));
  proto::CheckpointMetadata metadata;
  metadata.created_by = absl::StrCat("fedcl-sim initial model, seed ", request.seed);
  return proto::SaveCheckpoint(fs, path, *model, {}, metadata);
}

v1::ServerConfig ServerConfigFor(const Scenario& scenario, const SimulationInputs& inputs,
                                 const MethodSpec& method, const ServerConfigRequest& request,
                                 const std::string& checkpoint) {
  v1::ServerConfig config;
  config.set_state_dir(request.state_dir);
  config.set_backbone_checkpoint(checkpoint);
  config.set_num_classes(inputs.train.num_classes);
  *config.mutable_module() = scenario.config.module();
  proto::RuleConfigToProto(method.aggregator, config.mutable_aggregator());
  proto::ToProto(method.recipe, config.mutable_recipe());
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
  if (method.upload.compresses())
    config.set_upload_compression(fl::CompressionSpecText(method.upload));
  // Journal accepted updates so a restarted server resumes the open round with them, but without
  // an fsync per update: a simulation survives a server crash, not a power cut.
  config.mutable_journal()->set_sync("normal");
  return config;
}

// known_prob's p_n: the run's clients' true participation rates under its pattern (their
// long-run rate where availability drifts; a client that never takes part gets none).
absl::Status AddParticipationProbabilities(const Scenario& scenario, const SimulationInputs& inputs,
                                           const ServerConfigRequest& request,
                                           v1::ServerConfig& config) {
  FEDCL_ASSIGN_OR_RETURN(const PatternSpec pattern, SelectPattern(scenario, request.pattern));
  FEDCL_ASSIGN_OR_RETURN(ClientData data, ClientData::Create(scenario, inputs.train, request.seed));
  const std::vector<float> p = data.Probabilities(scenario, request.seed);
  for (size_t n = 0; n < p.size(); ++n) {
    const double rate = LongRunProbability(pattern, p[n]);
    if (rate > 0) (*config.mutable_participation_probability())[n] = static_cast<float>(rate);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EmitServerConfig(const Scenario& scenario, const SimulationInputs& inputs,
                              const ServerConfigRequest& request, base::FileSystem& fs) {
  const std::string label = request.method.empty() ? scenario.methods[0].label : request.method;
  const MethodSpec* method = FindMethod(scenario, label);
  if (method == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("method '", label, "' is not one of the scenario's"));
  }
  if (method->asynchronous()) {
    // The workers run synchronous rounds (each shard reports each round); a buffered run needs
    // one virtual clock for every device's arrivals.
    return absl::InvalidArgumentError(
        absl::StrCat("method '", label, "' is asynchronous (round_policy ", method->round->name,
                     "): multi-process simulations run synchronous rounds; run it in one process"));
  }
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(request.dir));
  const std::string checkpoint = base::JoinPath(request.dir, "initial.ckpt");
  FEDCL_RETURN_IF_ERROR(WriteInitialModel(scenario, inputs, request, checkpoint, fs));
  v1::ServerConfig config = ServerConfigFor(scenario, inputs, *method, request, checkpoint);
  FEDCL_ASSIGN_OR_RETURN(std::shared_ptr<const fl::AggregationRule> rule,
                         fl::CreateAggregationRule(method->aggregator));
  if (rule->needs_participation_probability())
    FEDCL_RETURN_IF_ERROR(AddParticipationProbabilities(scenario, inputs, request, config));
  std::string text;
  google::protobuf::TextFormat::PrintToString(config, &text);
  FEDCL_RETURN_IF_ERROR(fs.WriteFileAtomically(
      base::JoinPath(request.dir, "server.textproto"),
      absl::StrCat("# Generated by fedcl-sim --emit_server_config for scenario '",
                   scenario.config.name(), "', method ", label, ", seed ", request.seed, ", ",
                   request.shards, " shard(s).\n", text)));
  std::printf("wrote %s/server.textproto and %s/initial.ckpt\n", request.dir.c_str(),
              request.dir.c_str());
  return absl::OkStatus();
}

}  // namespace fedcl::sim
