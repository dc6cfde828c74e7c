// The report of a multi-process simulation, from the fedcl-server's metrics log: the server
// evaluates the global model every eval_every rounds and writes one JSON line per round
// (ServerMetricsLine in proto/fedcl/v1/sim_report.proto: round, participants, mean_loss,
// accuracy, ...). This turns them into fedcl-sim's metrics.jsonl,
// summary.json and report.html for the method, pattern and seed that ran, recomputing the
// participation heat-map from the scenario (the draws are keyed, so they are the ones the worker
// shards made). Test loss and FedAU's per-client weights are not in the server's log, so those
// fields are null and the weight chart is absent.
#ifndef FEDCL_SIM_REPORT_SERVER_METRICS_H_
#define FEDCL_SIM_REPORT_SERVER_METRICS_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sim/run/results.h"
#include "sim/world/inputs.h"
#include "sim/world/participation.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// Parses the server's metrics lines into a run of `method` under `pattern` with `seed`: one
// evaluation per line whose accuracy is a number (the round completed, the accuracy, the round's
// participants and mean loss; the test loss is unknown), and every line's participants counted
// as updates. Keys the run does not need are ignored. InvalidArgument naming the line for one
// that is not JSON or lacks round, participants or accuracy; InvalidArgument if no line holds an
// evaluation.
absl::StatusOr<RunResult> RunFromServerMetrics(absl::string_view metrics_jsonl,
                                               const std::string& method,
                                               const std::string& pattern, uint64_t seed);

// The participation of the first heatmap_clients clients over `rounds` rounds, as the workers
// drew it.
absl::StatusOr<ParticipationMap> RecomputeParticipation(const Scenario& scenario,
                                                        const SimulationInputs& inputs,
                                                        const PatternSpec& pattern, uint64_t seed,
                                                        int64_t rounds);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_SERVER_METRICS_H_
