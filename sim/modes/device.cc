#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"
#include "sim/run/cl_device.h"
#include "sim/world/cl_tasks.h"

namespace fedcl::sim {

absl::Status DeviceOptions::Validate() const {
  if (storage_dir.empty()) return absl::InvalidArgumentError("--device needs --storage_dir");
  return absl::OkStatus();
}

absl::Status RunDevice(const Scenario& scenario, const SimulationInputs& inputs,
                       const DeviceOptions& options, base::FileSystem& fs) {
  if (!scenario.config.has_continual())
    return absl::InvalidArgumentError("--device needs a continual scenario");
  ClDeviceOptions device;
  device.device = options.device;
  device.seed = options.seed;
  device.method = options.method;
  device.server = options.server;
  device.tls_ca_file = options.tls_ca_file;
  device.tls_server_name = options.tls_server_name;
  FEDCL_ASSIGN_OR_RETURN(device.token, ReadToken(fs, options.token_file));
  FEDCL_RETURN_IF_ERROR(options.Validate());
  device.storage_dir = options.storage_dir;
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(options.out));
  device.report_path =
      base::JoinPath(options.out, absl::StrCat("device-", options.device, ".report"));
  FEDCL_ASSIGN_OR_RETURN(PatternSpec pattern, SelectPattern(scenario, options.pattern));
  FEDCL_ASSIGN_OR_RETURN(std::vector<ClTask> tasks,
                         BuildTasks(scenario.config.continual(), scenario.num_clients(),
                                    inputs.train, inputs.test, options.seed));
  return RunClDevice(scenario, inputs, tasks, pattern, device, fs);
}

}  // namespace fedcl::sim
