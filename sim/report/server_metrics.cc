#include "sim/report/server_metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "proto/json.h"
#include "sim/world/client_data.h"

namespace fedcl::sim {

absl::StatusOr<RunResult> RunFromServerMetrics(absl::string_view metrics_jsonl,
                                               const std::string& method,
                                               const std::string& pattern, uint64_t seed) {
  RunResult run;
  run.method = method;
  run.pattern = pattern;
  run.seed = seed;
  int line_number = 0;
  for (absl::string_view text : absl::StrSplit(metrics_jsonl, '\n', absl::SkipWhitespace())) {
    ++line_number;
    v1::ServerMetricsLine line;
    if (!proto::ParseJson(text, &line, /*ignore_unknown_fields=*/true).ok() || !line.has_round() ||
        !line.has_participants() || !line.has_accuracy()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number,
                       " is not a fedcl-server metrics line (round, participants, accuracy)"));
    }
    run.updates += line.participants();
    if (line.accuracy().kind_case() != google::protobuf::Value::kNumberValue) continue;
    EvalPoint point;
    point.round = line.round() + 1;  // rounds completed
    point.accuracy = line.accuracy().number_value();
    point.loss = std::nan("");
    point.train_loss = line.has_mean_loss() ? line.mean_loss() : std::nan("");
    point.participants = line.participants();
    point.updates = run.updates;
    run.evals.push_back(point);
  }
  if (run.evals.empty()) {
    return absl::InvalidArgumentError("the server's metrics hold no evaluated round");
  }
  return run;
}

absl::StatusOr<ParticipationMap> RecomputeParticipation(const Scenario& scenario,
                                                        const SimulationInputs& inputs,
                                                        const PatternSpec& pattern, uint64_t seed,
                                                        int64_t rounds) {
  FEDCL_ASSIGN_OR_RETURN(ClientData data, ClientData::Create(scenario, inputs.train, seed));
  FEDCL_ASSIGN_OR_RETURN(
      std::unique_ptr<ParticipationProcess> process,
      ParticipationProcess::Create(pattern, data.Probabilities(scenario, seed), seed,
                                   inputs.trace ? &*inputs.trace : nullptr));
  ParticipationMap map;
  map.clients = std::min(scenario.num_clients(), scenario.config.heatmap_clients());
  map.rounds = rounds;
  map.participated.assign(static_cast<size_t>(map.clients) * rounds, 0);
  for (int64_t t = 0; t < rounds; ++t) {
    process->Advance(t, 0.0, 0, static_cast<uint32_t>(map.clients));
    for (uint32_t n : process->Participants(0, static_cast<uint32_t>(map.clients))) {
      map.participated[static_cast<size_t>(n) * rounds + t] = 1;
    }
  }
  return map;
}

}  // namespace fedcl::sim
