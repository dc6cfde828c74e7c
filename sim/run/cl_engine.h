// fedcl-sim's continual-learning runs (a scenario with a `continual` section): every device runs
// the device cl::Learner over its own stream of tasks, synced by the device::DeviceSession the
// SDK and fedcl-client run, through an InProcessPort to the same fl::Coordinator the server runs —
// the method's shared modules (device::InitialModules) under the scenario's aggregator (FedAU by
// default), a growing method's adapters through the coordinator's pool (grouped by the statistics
// of the shift that triggered them, aggregated per module over its holders).
//
// A round: participation is drawn (the scenario's first pattern); each participant, in device
// order (so that the pool's grouping does not depend on threads), Begins — proposing what it grew
// since its last round and downloading what changed; then all take `steps_per_round` Learn steps
// on their current task's images in parallel (device d enters task t at round t·R + delay_d),
// commit, and submit in device order; then the round closes. Learning a closed round did not
// take stays queued on the device (Unsent::kKeep), as on real devices.
// Devices that do not take part neither learn nor sync. After each task's last round the
// evaluation devices predict every task's test images: row t of the accuracy matrix.
// A growing method's growths are read as shift detections (ClRunResult::expansion): a device's
// first growth in a shifted task gives that task's delay in samples, any other growth is a false
// alarm.
#ifndef FEDCL_SIM_RUN_CL_ENGINE_H_
#define FEDCL_SIM_RUN_CL_ENGINE_H_

#include <cstdint>
#include <string>
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

// The fraction of `test` the learner predicts right.
absl::StatusOr<double> TaskAccuracy(cl::Learner& learner, const data::Dataset& test);

// Runs one method on one seed. `pattern` is the participation pattern to replay.
absl::StatusOr<ClRunResult> RunContinual(const Scenario& scenario, const SimulationInputs& inputs,
                                         const std::vector<ClTask>& tasks,
                                         const std::string& method, const PatternSpec& pattern,
                                         uint64_t seed, const ClEngineOptions& options);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_CL_ENGINE_H_
