#include "sim/report/report.h"

#include "core/base/status_macros.h"
#include "sim/report/html.h"
#include "sim/run/process_memory.h"

// The charting library, embedded at build time (sim/report/chart_library.S.in).
extern "C" const char fedcl_chart_library[];
extern "C" const char fedcl_chart_library_end[];

namespace fedcl::sim {
namespace {

absl::Status WriteFiles(base::FileSystem& fs, const std::string& dir,
                        const absl::StatusOr<std::string>& summary,
                        const absl::StatusOr<std::string>& html) {
  FEDCL_RETURN_IF_ERROR(summary.status());
  FEDCL_RETURN_IF_ERROR(html.status());
  FEDCL_RETURN_IF_ERROR(fs.WriteFileAtomically(base::JoinPath(dir, "summary.json"), *summary));
  return fs.WriteFileAtomically(base::JoinPath(dir, "report.html"), *html);
}

}  // namespace

absl::string_view ChartLibrary() {
  return absl::string_view(fedcl_chart_library,
                           static_cast<size_t>(fedcl_chart_library_end - fedcl_chart_library));
}

absl::Status WriteFederatedReport(base::FileSystem& fs, const std::string& dir,
                                  const Scenario& scenario, const std::vector<RunResult>& runs,
                                  const std::map<std::string, ParticipationMap>& maps,
                                  const std::vector<MethodSummary>& summaries, double wall_seconds,
                                  const v1::SimTuning* tuning) {
  return WriteFiles(fs, dir, SummaryJson(scenario, summaries, wall_seconds, PeakRssBytes()),
                    ReportHtml(scenario, runs, maps, summaries, ChartLibrary(), tuning));
}

absl::Status WriteContinualReport(base::FileSystem& fs, const std::string& dir,
                                  const Scenario& scenario, const std::vector<ClRunResult>& runs,
                                  double wall_seconds) {
  return WriteFiles(fs, dir, ClSummaryJson(scenario, runs, wall_seconds),
                    ClReportHtml(scenario, runs, ChartLibrary()));
}

}  // namespace fedcl::sim
