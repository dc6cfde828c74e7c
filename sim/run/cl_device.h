// A continual scenario with real processes: `fedcl-sim --device=D` runs device D of a scenario
// (sim/scenarios/cl_domains.textproto, cl_classes.textproto) as its own process through the edge
// SDK (fedcl::Client) against a fedcl-server, on the stream the in-process run gives that device:
// the same tasks, task times (round t·R + delay_d, where it calls Client::BeginTask with the
// task's classes), participation draws and minibatches, keyed by the seed. The round is the
// server's: in each round the device takes part in, it syncs (downloading what changed), takes
// `steps_per_round` Learn steps on its current task and syncs again to submit. Once the server has
// moved past a task's last round, an evaluation device (d < eval_devices) syncs and predicts every
// task's test images: one row of its accuracy matrix. The device writes a ClDeviceReport;
// `fedcl-sim --report_devices=DIR` averages the evaluation devices' matrices and prints the
// scenario's table (sim/report/device_reports.h).
//
// The learner takes the scenario's learning rate and SEMA knobs (new_module_steps, τ, adapters
// per block); the rest are the SDK's defaults.
#ifndef FEDCL_SIM_RUN_CL_DEVICE_H_
#define FEDCL_SIM_RUN_CL_DEVICE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/base/filesystem.h"
#include "sim/world/cl_tasks.h"
#include "sim/world/inputs.h"
#include "sim/world/participation.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

struct ClDeviceOptions {
  int device = 0;
  uint64_t seed = 1;
  std::string method = "sema";  // one the SDK runs
  std::string server, tls_ca_file, tls_server_name, token;
  std::string storage_dir;
  std::string report_path;  // where the ClDeviceReport goes (text format)
  absl::Duration max_time = absl::Minutes(30);
};

absl::Status RunClDevice(const Scenario& scenario, const SimulationInputs& inputs,
                         const std::vector<ClTask>& tasks, const PatternSpec& pattern,
                         const ClDeviceOptions& options, base::FileSystem& fs);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_CL_DEVICE_H_
