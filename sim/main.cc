// fedcl-sim: runs a scenario (sim/scenarios/*.textproto) over many virtual clients with the same
// Coordinator and local-training code as fedcl-server and fedcl-client, and writes
// metrics.jsonl, summary.json and report.html to --out.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/base/filesystem.h"
#include "core/base/status_macros.h"
#include "sim/report/device_reports.h"
#include "sim/report/metrics.h"
#include "sim/report/report.h"
#include "sim/report/server_metrics.h"
#include "sim/run/cl_device.h"
#include "sim/run/cl_engine.h"
#include "sim/run/engine.h"
#include "sim/run/process_memory.h"
#include "sim/run/worker.h"
#include "sim/world/cl_tasks.h"
#include "sim/world/scenario.h"
#include "tools/command_line.h"

ABSL_FLAG(std::string, scenario, "sim/scenarios/quick.textproto", "Scenario file (text proto).");
ABSL_FLAG(std::string, out, "out/sim", "Directory for metrics.jsonl, summary.json, report.html.");
ABSL_FLAG(int, threads, -1, "Worker threads (overrides the scenario; 0 = all cores).");
ABSL_FLAG(int64_t, rounds, 0, "Run this many rounds instead of the scenario's (0 = scenario's).");
ABSL_FLAG(bool, validate_only, false, "Check the scenario and its input files, then exit.");
ABSL_FLAG(bool, progress, true, "Show progress on stderr (a live line on a terminal).");
// Multi-process mode (sim/run/worker.h).
ABSL_FLAG(bool, worker, false,
          "Run as a simulator worker: host shard --shard of --shards of the virtual clients and "
          "train them against the fedcl-server at --server.");
ABSL_FLAG(int, shard, 0, "Worker: this worker's shard, in [0, --shards).");
ABSL_FLAG(int, shards, 1, "Worker / --emit_server_config: number of worker shards.");
ABSL_FLAG(std::string, server, "127.0.0.1:50051", "Worker: the fedcl-server (gRPC target).");
ABSL_FLAG(std::string, tls_ca, "",
          "Worker: PEM root certificate(s) of the server; empty = plaintext.");
ABSL_FLAG(std::string, tls_server_name, "",
          "Worker: name on the server's certificate, if not the host.");
ABSL_FLAG(std::string, token_file, "", "Worker: file holding the worker's bearer token.");
ABSL_FLAG(std::string, pattern, "",
          "Worker: the participation pattern to run (default: the first).");
ABSL_FLAG(uint64_t, seed, 0, "Worker / --emit_server_config: the seed (default: the first).");
ABSL_FLAG(std::string, emit_server_config, "",
          "Write DIR/server.textproto and DIR/initial.ckpt for a multi-process run of --method "
          "with --shards workers, then exit.");
ABSL_FLAG(std::string, method, "", "--emit_server_config: the method (default: the first).");
ABSL_FLAG(std::string, state_dir, "state", "--emit_server_config: the server's state_dir.");
ABSL_FLAG(std::string, tokens_file, "", "--emit_server_config: the server's tokens file.");
ABSL_FLAG(std::string, tls_cert, "", "--emit_server_config: the server's certificate (PEM).");
ABSL_FLAG(std::string, tls_key, "", "--emit_server_config: the server's private key (PEM).");
// A continual scenario with real processes (sim/run/cl_device.h).
ABSL_FLAG(int, device, -1,
          "Run device --device of a continual scenario as this process, through the edge "
          "SDK against the fedcl-server at --server (--method: the SDK's learner, default sema; "
          "--storage_dir: its state); writes --out/device-<d>.report.");
ABSL_FLAG(std::string, storage_dir, "", "--device: the device's storage directory.");
ABSL_FLAG(std::string, report_devices, "",
          "Print the table of a continual run with real processes from the device reports in "
          "this directory.");
ABSL_FLAG(std::string, report_from, "",
          "Write --out's metrics.jsonl, summary.json and report.html for a multi-process run from "
          "the fedcl-server metrics log at this path (--method, --pattern, --seed name the run).");

namespace fedcl::sim {
namespace {

std::string Clock(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                   : absl::StrFormat("%d:%02d", s / 60, s % 60);
}

// Progress on stderr: one line rewritten in place on a terminal (at most 5 times a second),
// otherwise a plain line every 10 seconds and at the end of each run.
class Progress final : public RunObserver {
 public:
  Progress(bool enabled, int64_t total_rounds)
      : enabled_(enabled), interactive_(isatty(STDERR_FILENO) != 0), total_(total_rounds) {}

  void StartRun(const std::string& label) { label_ = label; }
  void OnRound(int64_t round, int64_t participants) override {
    ++done_;
    round_ = round;
    participants_ = participants;
    Print(false);
  }
  void OnEval(const EvalPoint& point) override { accuracy_ = point.accuracy; }
  void EndRun() {
    Print(true);
    if (enabled_ && interactive_) std::fputc('\n', stderr);
  }

 private:
  void Print(bool force) {
    if (!enabled_) return;
    const double elapsed = Seconds(start_);
    const double since = Seconds(last_print_);
    if (!force && since < (interactive_ ? 0.2 : 10.0)) return;
    last_print_ = std::chrono::steady_clock::now();
    const double eta = done_ > 0 ? elapsed * static_cast<double>(total_ - done_) / done_ : 0.0;
    std::string line =
        absl::StrFormat("%s | round %d | elapsed %s | ETA %s | accuracy %s | participants %d",
                        label_, round_, Clock(elapsed), Clock(eta),
                        accuracy_ < 0 ? "-" : absl::StrFormat("%.4f", accuracy_), participants_);
    if (interactive_) {
      std::fprintf(stderr, "\r%-120s", line.c_str());
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  static double Seconds(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  const bool enabled_;
  const bool interactive_;
  const int64_t total_;
  int64_t done_ = 0;
  int64_t round_ = 0;
  int64_t participants_ = 0;
  double accuracy_ = -1.0;
  std::string label_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_print_{};
};

// Appends each evaluation to metrics.jsonl as it happens, so a long run can be watched.
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
  absl::Status status_;
  Progress& progress_;
  const RunResult* run_ = nullptr;
};

// The scenario's pattern named by --pattern (default: the first).
absl::StatusOr<PatternSpec> SelectedPattern(const Scenario& scenario) {
  const std::string name = absl::GetFlag(FLAGS_pattern);
  if (name.empty()) return scenario.patterns[0];
  for (const PatternSpec& pattern : scenario.patterns) {
    if (pattern.name == name) return pattern;
  }
  return absl::InvalidArgumentError(absl::StrCat("pattern '", name, "' is not in the scenario"));
}

absl::Status WriteOutputs(const Scenario& scenario, const std::vector<RunResult>& results,
                          const std::map<std::string, ParticipationMap>& maps, double wall) {
  const std::vector<MethodSummary> summaries = Summarize(scenario, results);
  FEDCL_RETURN_IF_ERROR(WriteFederatedReport(base::FileSystem::Default(), absl::GetFlag(FLAGS_out),
                                             scenario, results, maps, summaries, wall));
  std::printf("%s", SummaryText(summaries).c_str());
  return absl::OkStatus();
}

absl::Status ReportFromServer(Scenario& scenario, const SimulationInputs& inputs, uint64_t seed) {
  base::FileSystem& fs = base::FileSystem::Default();
  FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(absl::GetFlag(FLAGS_report_from), 1 << 30));
  FEDCL_ASSIGN_OR_RETURN(PatternSpec pattern, SelectedPattern(scenario));
  const std::string method =
      absl::GetFlag(FLAGS_method).empty() ? scenario.methods[0].label : absl::GetFlag(FLAGS_method);
  // The report covers the run that happened: this method, pattern and seed.
  auto found = std::find_if(scenario.methods.begin(), scenario.methods.end(),
                            [&](const MethodSpec& m) { return m.label == method; });
  if (found == scenario.methods.end()) {
    return absl::InvalidArgumentError(absl::StrCat("method '", method, "' is not in the scenario"));
  }
  const MethodSpec selected = *found;
  scenario.methods = {selected};
  scenario.patterns = {pattern};
  scenario.config.clear_seed();
  scenario.config.add_seed(seed);
  FEDCL_ASSIGN_OR_RETURN(RunResult run, RunFromServerMetrics(text, method, pattern.name, seed));
  const int64_t rounds = run.evals.back().round;
  std::map<std::string, ParticipationMap> maps;
  FEDCL_ASSIGN_OR_RETURN(maps[pattern.name],
                         RecomputeParticipation(scenario, inputs, pattern, seed, rounds));
  const std::string out = absl::GetFlag(FLAGS_out);
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(out));
  FEDCL_ASSIGN_OR_RETURN(std::string lines, MetricsLines(run));
  FEDCL_RETURN_IF_ERROR(fs.WriteFileAtomically(base::JoinPath(out, "metrics.jsonl"), lines));
  FEDCL_RETURN_IF_ERROR(WriteOutputs(scenario, {run}, maps, 0.0));
  std::printf("wrote %s/{metrics.jsonl,summary.json,report.html} from %s\n", out.c_str(),
              absl::GetFlag(FLAGS_report_from).c_str());
  return absl::OkStatus();
}

// A continual scenario: every CL method on every seed, side by side on the same streams.
absl::Status RunContinualScenario(const Scenario& scenario, const SimulationInputs& inputs,
                                  base::FileSystem& fs) {
  const v1::ContinualConfig& c = scenario.config.continual();
  FEDCL_ASSIGN_OR_RETURN(PatternSpec pattern, SelectedPattern(scenario));
  const std::string out = absl::GetFlag(FLAGS_out);
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(out));
  const auto started = std::chrono::steady_clock::now();
  std::vector<ClRunResult> results;
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<MetricsLog> metrics,
                         MetricsLog::Create(base::JoinPath(out, "metrics.jsonl")));
  const ClEngineOptions options{.threads = scenario.config.threads(),
                                .progress = absl::GetFlag(FLAGS_progress)};
  for (uint64_t seed : scenario.config.seed()) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<ClTask> tasks,
                           BuildTasks(c, scenario.num_clients(), inputs.train, inputs.test, seed));
    for (const std::string& name : c.method()) {
      FEDCL_ASSIGN_OR_RETURN(cl::ClMethod method, cl::ParseClMethod(name));
      if (options.progress)
        std::fprintf(stderr, "%s seed %llu\n", name.c_str(), static_cast<unsigned long long>(seed));
      absl::StatusOr<ClRunResult> run =
          RunContinual(scenario, inputs, tasks, method, pattern, seed, options);
      if (!run.ok()) {
        return absl::Status(run.status().code(),
                            absl::StrCat(name, " / seed ", seed, ": ", run.status().message()));
      }
      FEDCL_ASSIGN_OR_RETURN(std::string lines, ClMetricsLines(*run));
      FEDCL_RETURN_IF_ERROR(metrics->Append(lines));
      results.push_back(std::move(*run));
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  FEDCL_RETURN_IF_ERROR(WriteContinualReport(fs, out, scenario, results, wall));
  std::printf("%s\nwrote %s/{metrics.jsonl,summary.json,report.html} in %s, peak RSS %.1f MiB\n",
              ClTextTable(results).c_str(), out.c_str(), Clock(wall).c_str(),
              PeakRssBytes() / 1048576.0);
  return absl::OkStatus();
}

// The bearer token in --token_file, or empty without one (workers and devices).
absl::StatusOr<std::string> TokenFromFlag(const base::FileSystem& fs) {
  if (absl::GetFlag(FLAGS_token_file).empty()) return std::string();
  FEDCL_ASSIGN_OR_RETURN(std::string token, fs.ReadFile(absl::GetFlag(FLAGS_token_file), 4096));
  return std::string(absl::StripAsciiWhitespace(token));
}

absl::Status Run() {
  base::FileSystem& fs = base::FileSystem::Default();
  FEDCL_ASSIGN_OR_RETURN(Scenario scenario, LoadScenario(fs, absl::GetFlag(FLAGS_scenario)));
  if (absl::GetFlag(FLAGS_threads) >= 0) scenario.config.set_threads(absl::GetFlag(FLAGS_threads));
  if (absl::GetFlag(FLAGS_rounds) > 0) scenario.config.set_rounds(absl::GetFlag(FLAGS_rounds));
  FEDCL_ASSIGN_OR_RETURN(SimulationInputs inputs, LoadInputs(fs, scenario));
  // Decoding the data set leaves ~50 MB of freed buffers resident; hand them back so that memory
  // figures (and the machine) see only what the simulation holds.
  malloc_trim(0);
  const uint64_t seed =
      absl::GetFlag(FLAGS_seed) != 0 ? absl::GetFlag(FLAGS_seed) : scenario.config.seed(0);
  if (!absl::GetFlag(FLAGS_emit_server_config).empty()) {
    ServerConfigRequest request;
    request.dir = absl::GetFlag(FLAGS_emit_server_config);
    request.state_dir = absl::GetFlag(FLAGS_state_dir);
    request.method = absl::GetFlag(FLAGS_method).empty() ? scenario.methods[0].label
                                                         : absl::GetFlag(FLAGS_method);
    request.seed = seed;
    request.shards = absl::GetFlag(FLAGS_shards);
    request.tokens_file = absl::GetFlag(FLAGS_tokens_file);
    request.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
    request.tls_key_file = absl::GetFlag(FLAGS_tls_key);
    FEDCL_RETURN_IF_ERROR(EmitServerConfig(scenario, inputs, request, fs));
    std::printf("wrote %s/server.textproto and %s/initial.ckpt\n", request.dir.c_str(),
                request.dir.c_str());
    return absl::OkStatus();
  }
  if (!absl::GetFlag(FLAGS_report_from).empty()) return ReportFromServer(scenario, inputs, seed);
  if (!absl::GetFlag(FLAGS_report_devices).empty()) {
    FEDCL_ASSIGN_OR_RETURN(std::string table,
                           ReportClDevices(fs, absl::GetFlag(FLAGS_report_devices)));
    std::printf("%s", table.c_str());
    return absl::OkStatus();
  }
  if (absl::GetFlag(FLAGS_device) >= 0) {
    if (!scenario.config.has_continual())
      return absl::InvalidArgumentError("--device needs a continual scenario");
    ClDeviceOptions options;
    options.device = absl::GetFlag(FLAGS_device);
    options.seed = seed;
    options.method = absl::GetFlag(FLAGS_method).empty() ? "sema" : absl::GetFlag(FLAGS_method);
    options.server = absl::GetFlag(FLAGS_server);
    options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
    options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
    FEDCL_ASSIGN_OR_RETURN(options.token, TokenFromFlag(fs));
    options.storage_dir = absl::GetFlag(FLAGS_storage_dir);
    if (options.storage_dir.empty())
      return absl::InvalidArgumentError("--device needs --storage_dir");
    FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(absl::GetFlag(FLAGS_out)));
    options.report_path = base::JoinPath(absl::GetFlag(FLAGS_out),
                                         absl::StrCat("device-", options.device, ".report"));
    FEDCL_ASSIGN_OR_RETURN(PatternSpec pattern, SelectedPattern(scenario));
    FEDCL_ASSIGN_OR_RETURN(std::vector<ClTask> tasks,
                           BuildTasks(scenario.config.continual(), scenario.num_clients(),
                                      inputs.train, inputs.test, seed));
    return RunClDevice(scenario, inputs, tasks, pattern, options, fs);
  }
  if (absl::GetFlag(FLAGS_worker)) {
    WorkerOptions options;
    options.server = absl::GetFlag(FLAGS_server);
    options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
    options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
    FEDCL_ASSIGN_OR_RETURN(options.token, TokenFromFlag(fs));
    options.shard = absl::GetFlag(FLAGS_shard);
    options.shards = absl::GetFlag(FLAGS_shards);
    options.pattern = absl::GetFlag(FLAGS_pattern).empty() ? scenario.patterns[0].name
                                                           : absl::GetFlag(FLAGS_pattern);
    options.seed = seed;
    Progress progress(absl::GetFlag(FLAGS_progress), scenario.rounds());
    progress.StartRun(absl::StrFormat("worker %d/%d %s seed %d", options.shard, options.shards,
                                      options.pattern, seed));
    FEDCL_RETURN_IF_ERROR(RunWorker(scenario, inputs, options, fs, &progress));
    progress.EndRun();
    return absl::OkStatus();
  }
  if (absl::GetFlag(FLAGS_validate_only)) {
    std::printf("scenario '%s' is valid: %d clients, %d method(s), %d pattern(s), %d seed(s)\n",
                scenario.config.name().c_str(), scenario.num_clients(),
                static_cast<int>(scenario.methods.size()),
                static_cast<int>(scenario.patterns.size()), scenario.config.seed_size());
    return absl::OkStatus();
  }
  if (scenario.config.has_continual()) return RunContinualScenario(scenario, inputs, fs);
  const std::string out = absl::GetFlag(FLAGS_out);
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(out));
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<MetricsLog> metrics,
                         MetricsLog::Create(base::JoinPath(out, "metrics.jsonl")));

  const auto started = std::chrono::steady_clock::now();
  const int64_t runs = static_cast<int64_t>(scenario.methods.size()) *
                       static_cast<int64_t>(scenario.patterns.size()) * scenario.config.seed_size();
  Progress progress(absl::GetFlag(FLAGS_progress), runs * scenario.rounds());
  MetricsObserver observer(*metrics, progress);
  Engine engine(scenario, inputs);
  std::vector<RunResult> results;
  std::map<std::string, ParticipationMap> maps;
  int64_t index = 0;
  absl::Status status = absl::OkStatus();
  // Seeds outermost: every method and pattern of seed 1 finishes before seed 2 starts, so an
  // interrupted run still compares the methods side by side.
  for (uint64_t seed : scenario.config.seed()) {
    for (const PatternSpec& pattern : scenario.patterns) {
      for (const MethodSpec& method : scenario.methods) {
        ++index;
        progress.StartRun(absl::StrFormat("[%d/%d] %s %s seed %d", index, runs, method.label,
                                          pattern.name, seed));
        RunResult partial;
        partial.method = method.label;
        partial.pattern = pattern.name;
        partial.seed = seed;
        observer.SetRun(&partial);
        ParticipationMap* map = maps.contains(pattern.name) ? nullptr : &maps[pattern.name];
        absl::StatusOr<RunResult> result = engine.Run(method, pattern, seed, &observer, map);
        progress.EndRun();
        if (result.ok() && !observer.status().ok()) result = observer.status();
        if (!result.ok()) {
          status = absl::Status(result.status().code(),
                                absl::StrCat(method.label, " / ", pattern.name, " / seed ", seed,
                                             ": ", result.status().message()));
          break;
        }
        results.push_back(std::move(*result));
      }
      if (!status.ok()) break;
    }
    if (!status.ok()) break;
  }
  FEDCL_RETURN_IF_ERROR(status);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  FEDCL_RETURN_IF_ERROR(WriteOutputs(scenario, results, maps, wall));
  std::printf("wrote %s/{metrics.jsonl,summary.json,report.html} in %s, peak RSS %.1f MiB\n",
              out.c_str(), Clock(wall).c_str(), PeakRssBytes() / 1048576.0);
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedcl::sim

int main(int argc, char** argv) {
  if (!fedcl::tools::ParseCommandLine(
          argc, argv, "fedcl-sim",
          "fedcl-sim --scenario=FILE --out=DIR: simulate federated learning over many virtual "
          "clients with heterogeneous participation, and write metrics.jsonl, summary.json and "
          "report.html to DIR.",
          "sim/")) {
    return 2;
  }
  absl::Status status = fedcl::sim::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "fedcl-sim: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
