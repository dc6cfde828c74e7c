#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"
#include "sim/report/metrics.h"
#include "sim/report/report.h"
#include "sim/run/cl_engine.h"
#include "sim/run/cl_joint.h"
#include "sim/run/process_memory.h"
#include "sim/world/cl_tasks.h"

namespace fedcl::sim {
namespace {

// Every method of one seed, on the seed's tasks; each run's lines go to `log` as it ends.
absl::Status RunSeed(const Scenario& scenario, const SimulationInputs& inputs,
                     const PatternSpec& pattern, uint64_t seed, const ClEngineOptions& options,
                     MetricsLog& log, std::vector<ClRunResult>& results) {
  const v1::ContinualConfig& c = scenario.config.continual();
  FEDCL_ASSIGN_OR_RETURN(std::vector<ClTask> tasks,
                         BuildTasks(c, scenario.num_clients(), inputs.train, inputs.test, seed));
  for (const std::string& name : c.method()) {
    if (options.progress)
      std::fprintf(stderr, "%s seed %llu\n", name.c_str(), static_cast<unsigned long long>(seed));
    absl::StatusOr<ClRunResult> run =
        RunContinual(scenario, inputs, tasks, name, pattern, seed, options);
    if (!run.ok()) {
      return absl::Status(run.status().code(),
                          absl::StrCat(name, " / seed ", seed, ": ", run.status().message()));
    }
    FEDCL_ASSIGN_OR_RETURN(std::string lines, ClMetricsLines(*run));
    FEDCL_RETURN_IF_ERROR(log.Append(lines));
    results.push_back(std::move(*run));
  }
  // The bound every method's row reads against.
  absl::StatusOr<ClRunResult> bound = RunJointBound(scenario, inputs, tasks, seed, options);
  if (!bound.ok()) {
    return absl::Status(bound.status().code(), absl::StrCat(kJointBoundMethod, " / seed ", seed,
                                                            ": ", bound.status().message()));
  }
  FEDCL_ASSIGN_OR_RETURN(std::string lines, ClMetricsLines(*bound));
  FEDCL_RETURN_IF_ERROR(log.Append(lines));
  results.push_back(std::move(*bound));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunContinualScenario(const Scenario& scenario, const SimulationInputs& inputs,
                                  const ContinualRunOptions& options, base::FileSystem& fs) {
  FEDCL_ASSIGN_OR_RETURN(PatternSpec pattern, SelectPattern(scenario, options.pattern));
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(options.out));
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<MetricsLog> log,
                         MetricsLog::Create(base::JoinPath(options.out, "metrics.jsonl")));
  const auto started = std::chrono::steady_clock::now();
  const ClEngineOptions engine{.threads = scenario.config.threads(), .progress = options.progress};
  std::vector<ClRunResult> results;
  for (uint64_t seed : scenario.config.seed())
    FEDCL_RETURN_IF_ERROR(RunSeed(scenario, inputs, pattern, seed, engine, *log, results));
  const double wall = SecondsSince(started);
  FEDCL_RETURN_IF_ERROR(WriteContinualReport(fs, options.out, scenario, results, wall));
  std::printf("%s\nwrote %s/{metrics.jsonl,summary.json,report.html} in %s, peak RSS %.1f MiB\n",
              ClTextTable(results).c_str(), options.out.c_str(), ClockText(wall).c_str(),
              PeakRssBytes() / 1048576.0);
  return absl::OkStatus();
}

}  // namespace fedcl::sim
