#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"
#include "sim/report/metrics.h"
#include "sim/report/report.h"
#include "sim/run/engine.h"
#include "sim/run/process_memory.h"

namespace fedcl::sim {
namespace {

// Appends each evaluation to metrics.jsonl as it happens, so a long run can be watched, and
// passes the run's progress on.
class MetricsObserver final : public RunObserver {
 public:
  MetricsObserver(MetricsLog& log, Progress& progress) : log_(log), progress_(progress) {}
  void SetRun(const RunResult* run) { run_ = run; }
  void OnRound(int64_t round, int64_t participants) override {
    progress_.OnRound(round, participants);
  }
  void OnEval(const EvalPoint& point) override {
    progress_.OnEval(point);
    absl::StatusOr<std::string> line = MetricsLine(*run_, point);
    absl::Status written = line.ok() ? log_.Append(absl::StrCat(*line, "\n")) : line.status();
    if (status_.ok()) status_ = written;
  }
  // The first error writing metrics.jsonl.
  const absl::Status& status() const { return status_; }

 private:
  MetricsLog& log_;
  Progress& progress_;
  const RunResult* run_ = nullptr;
  absl::Status status_;
};

// What the runs produce: their results and, per pattern, the first seed's participation map.
struct Runs {
  std::vector<RunResult> results;
  std::map<std::string, ParticipationMap> maps;
};

// One run; its errors name it.
absl::Status RunOne(const Engine& engine, const MethodSpec& method, const PatternSpec& pattern,
                    uint64_t seed, MetricsObserver& observer, Progress& progress, Runs& runs) {
  RunResult partial;
  partial.method = method.label;
  partial.pattern = pattern.name;
  partial.seed = seed;
  observer.SetRun(&partial);
  ParticipationMap* map = runs.maps.contains(pattern.name) ? nullptr : &runs.maps[pattern.name];
  absl::StatusOr<RunResult> result = engine.Run(method, pattern, seed, &observer, map);
  progress.EndRun();
  if (result.ok() && !observer.status().ok()) result = observer.status();
  if (!result.ok()) {
    return absl::Status(result.status().code(),
                        absl::StrCat(method.label, " / ", pattern.name, " / seed ", seed, ": ",
                                     result.status().message()));
  }
  runs.results.push_back(std::move(*result));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunFederatedScenario(const Scenario& declared, const SimulationInputs& inputs,
                                  const FederatedRunOptions& options, base::FileSystem& fs) {
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(options.out));
  TunedScenario tuned;
  if (options.tune) {
    FEDCL_ASSIGN_OR_RETURN(tuned, TuneMethods(declared, inputs, options, fs));
  }
  const Scenario& scenario = options.tune ? tuned.scenario : declared;
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<MetricsLog> log,
                         MetricsLog::Create(base::JoinPath(options.out, "metrics.jsonl")));
  const auto started = std::chrono::steady_clock::now();
  const int64_t total = static_cast<int64_t>(scenario.methods.size()) *
                        static_cast<int64_t>(scenario.patterns.size()) *
                        scenario.config.seed_size();
  Progress progress(options.progress, total * scenario.rounds());
  MetricsObserver observer(*log, progress);
  Engine engine(scenario, inputs);
  Runs runs;
  int64_t index = 0;
  // Seeds outermost: every method and pattern of seed 1 finishes before seed 2 starts.
  for (uint64_t seed : scenario.config.seed()) {
    for (const PatternSpec& pattern : scenario.patterns) {
      for (const MethodSpec& method : scenario.methods) {
        progress.StartRun(absl::StrFormat("[%d/%d] %s %s seed %d", ++index, total, method.label,
                                          pattern.name, seed));
        FEDCL_RETURN_IF_ERROR(RunOne(engine, method, pattern, seed, observer, progress, runs));
      }
    }
  }
  const double wall = SecondsSince(started);
  const std::vector<MethodSummary> summaries = Summarize(scenario, runs.results);
  FEDCL_RETURN_IF_ERROR(WriteFederatedReport(fs, options.out, scenario, runs.results, runs.maps,
                                             summaries, wall,
                                             options.tune ? &tuned.record : nullptr));
  std::printf(
      "%s\n%s\nwrote %s/{metrics.jsonl,summary.json,report.html} in %s, peak RSS %.1f MiB\n",
      SummaryText(summaries).c_str(), Findings(summaries).c_str(), options.out.c_str(),
      ClockText(wall).c_str(), PeakRssBytes() / 1048576.0);
  return absl::OkStatus();
}

}  // namespace fedcl::sim
