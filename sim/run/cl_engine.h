// fedcl-sim's continual-learning runs (a scenario with a `continual` section): every device runs
// the device cl::Learner over its own stream of tasks, and in the rounds it takes part in it syncs
// its shared modules through the same fl::Coordinator the server runs — the head and base modules
// under the scenario's aggregator (FedAU by default), SEMA's grown adapters through the
// coordinator's growing pool (ProposeModule: grouped by the statistics of the shift that
// triggered them, aggregated per module over its holders with FedAU per (client, module)).
//
// A round: participation is drawn (the scenario's first pattern); each participant downloads what
// changed, takes `steps_per_round` Learn steps on its current task's images (device d enters task
// t at round t·R + delay_d), and — in device order, so that grouping does not depend on threads —
// proposes what it grew and submits the deltas of what it trained; then the round closes.
// Devices that do not take part neither learn nor sync. After each task's last round the
// evaluation devices predict every task's test images: row t of the accuracy matrix.
#ifndef FEDCL_SIM_RUN_CL_ENGINE_H_
#define FEDCL_SIM_RUN_CL_ENGINE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cl/learner.h"
#include "sim/run/results.h"
#include "sim/world/cl_tasks.h"
#include "sim/world/inputs.h"
#include "sim/world/participation.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

struct ClEngineOptions {
  int threads = 0;  // 0 = all cores
  bool progress = false;
};

// Runs one method on one seed. `pattern` is the participation pattern to replay.
absl::StatusOr<ClRunResult> RunContinual(const Scenario& scenario, const SimulationInputs& inputs,
                                         const std::vector<ClTask>& tasks, cl::ClMethod method,
                                         const PatternSpec& pattern, uint64_t seed,
                                         const ClEngineOptions& options);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_CL_ENGINE_H_
