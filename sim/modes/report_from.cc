#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"
#include "sim/report/metrics.h"
#include "sim/report/report.h"
#include "sim/report/server_metrics.h"

namespace fedcl::sim {

absl::Status ReportFromServer(Scenario scenario, const SimulationInputs& inputs,
                              const ReportFromOptions& options, base::FileSystem& fs) {
  FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(options.server_metrics, 1 << 30));
  FEDCL_ASSIGN_OR_RETURN(PatternSpec pattern, SelectPattern(scenario, options.pattern));
  const std::string method = options.method.empty() ? scenario.methods[0].label : options.method;
  const MethodSpec* found = FindMethod(scenario, method);
  if (found == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("method '", method, "' is not in the scenario"));
  // The report covers the run that happened: this method, pattern and seed.
  const MethodSpec selected = *found;
  scenario.methods = {selected};
  scenario.patterns = {pattern};
  scenario.config.clear_seed();
  scenario.config.add_seed(options.seed);
  FEDCL_ASSIGN_OR_RETURN(RunResult run,
                         RunFromServerMetrics(text, method, pattern.name, options.seed));
  std::map<std::string, ParticipationMap> maps;
  FEDCL_ASSIGN_OR_RETURN(
      maps[pattern.name],
      RecomputeParticipation(scenario, inputs, pattern, options.seed, run.evals.back().round));
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(options.out));
  FEDCL_ASSIGN_OR_RETURN(std::string lines, MetricsLines(run));
  FEDCL_RETURN_IF_ERROR(
      fs.WriteFileAtomically(base::JoinPath(options.out, "metrics.jsonl"), lines));
  const std::vector<MethodSummary> summaries = Summarize(scenario, {run});
  FEDCL_RETURN_IF_ERROR(
      WriteFederatedReport(fs, options.out, scenario, {run}, maps, summaries, /*wall_seconds=*/0));
  std::printf("%swrote %s/{metrics.jsonl,summary.json,report.html} from %s\n",
              SummaryText(summaries).c_str(), options.out.c_str(), options.server_metrics.c_str());
  return absl::OkStatus();
}

}  // namespace fedcl::sim
