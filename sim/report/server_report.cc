#include "sim/report/server_report.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "sim/world/client_data.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

// The value of a top-level numeric field "name":VALUE in one of the server's flat JSON lines;
// NaN for null; nullopt if absent or not a number.
std::optional<double> Field(absl::string_view line, absl::string_view name) {
  const std::string key = absl::StrCat("\"", name, "\":");
  const size_t at = line.find(key);
  if (at == absl::string_view::npos) return std::nullopt;
  absl::string_view rest = line.substr(at + key.size());
  if (absl::StartsWith(rest, "null")) return std::nan("");
  const size_t end = rest.find_first_of(",}");
  double value = 0;
  if (!absl::SimpleAtod(rest.substr(0, end), &value)) return std::nullopt;
  return value;
}

}  // namespace

absl::StatusOr<RunResult> RunFromServerMetrics(absl::string_view metrics_jsonl,
                                               const std::string& method,
                                               const std::string& pattern, uint64_t seed) {
  RunResult run;
  run.method = method;
  run.pattern = pattern;
  run.seed = seed;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(metrics_jsonl, '\n', absl::SkipWhitespace())) {
    ++line_number;
    const std::optional<double> round = Field(line, "round");
    const std::optional<double> participants = Field(line, "participants");
    const std::optional<double> accuracy = Field(line, "accuracy");
    if (!round || !participants || !accuracy) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number,
                       " is not a fedcl-server metrics line (round, participants, "
                       "accuracy)"));
    }
    run.updates += static_cast<int64_t>(*participants);
    if (std::isnan(*accuracy)) continue;
    EvalPoint point;
    point.round = static_cast<int64_t>(*round) + 1;  // rounds completed
    point.accuracy = *accuracy;
    point.loss = std::nan("");
    point.train_loss = Field(line, "mean_loss").value_or(std::nan(""));
    point.participants = static_cast<int64_t>(*participants);
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
