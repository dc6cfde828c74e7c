#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"

namespace fedcl::sim {

absl::Status RunWorkerShard(const Scenario& scenario, const SimulationInputs& inputs,
                            const WorkerShardOptions& options, const base::FileSystem& fs) {
  WorkerOptions worker = options.worker;
  FEDCL_ASSIGN_OR_RETURN(worker.token, ReadToken(fs, options.token_file));
  if (worker.pattern.empty()) worker.pattern = scenario.patterns[0].name;
  Progress progress(options.progress, scenario.rounds());
  progress.StartRun(absl::StrFormat("worker %d/%d %s seed %d", worker.shard, worker.shards,
                                    worker.pattern, worker.seed));
  FEDCL_RETURN_IF_ERROR(RunWorker(scenario, inputs, worker, fs, &progress));
  progress.EndRun();
  return absl::OkStatus();
}

}  // namespace fedcl::sim
