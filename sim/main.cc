// fedcl-sim: runs a scenario (sim/scenarios/*.textproto) over many virtual clients with the same
// Coordinator and local-training code as fedcl-server and fedcl-client, and writes
// metrics.jsonl, summary.json and report.html to --out. The flags pick one of the modes of
// sim/modes/modes.h; this file only reads them.
#include <malloc.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"

ABSL_FLAG(std::string, scenario, "sim/scenarios/quick.textproto", "Scenario file (text proto).");
ABSL_FLAG(std::string, out, "out/sim", "Directory for metrics.jsonl, summary.json, report.html.");
ABSL_FLAG(int, threads, -1, "Worker threads (overrides the scenario; 0 = all cores).");
ABSL_FLAG(int64_t, rounds, 0, "Run this many rounds instead of the scenario's (0 = scenario's).");
ABSL_FLAG(bool, tune, false,
          "Federated scenarios: tune every method on a validation split first (the scenario's "
          "tuning block), then run the selected settings; writes tuning.json and "
          "tuned_methods.textproto too.");
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
          "Worker, --emit_server_config, --device, --report_from: the participation pattern "
          "(default: the scenario's first).");
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

// --seed, or the scenario's first seed.
uint64_t SeedFlag(const Scenario& scenario) {
  return absl::GetFlag(FLAGS_seed) != 0 ? absl::GetFlag(FLAGS_seed) : scenario.config.seed(0);
}

ServerConfigRequest EmitFlags(const Scenario& scenario) {
  return {.dir = absl::GetFlag(FLAGS_emit_server_config),
          .state_dir = absl::GetFlag(FLAGS_state_dir),
          .method = absl::GetFlag(FLAGS_method),
          .seed = SeedFlag(scenario),
          .shards = absl::GetFlag(FLAGS_shards),
          .tokens_file = absl::GetFlag(FLAGS_tokens_file),
          .tls_cert_file = absl::GetFlag(FLAGS_tls_cert),
          .tls_key_file = absl::GetFlag(FLAGS_tls_key),
          .pattern = absl::GetFlag(FLAGS_pattern)};
}

ReportFromOptions ReportFromFlags(const Scenario& scenario) {
  return {.server_metrics = absl::GetFlag(FLAGS_report_from),
          .out = absl::GetFlag(FLAGS_out),
          .method = absl::GetFlag(FLAGS_method),
          .pattern = absl::GetFlag(FLAGS_pattern),
          .seed = SeedFlag(scenario)};
}

DeviceOptions DeviceFlags(const Scenario& scenario) {
  return {.device = absl::GetFlag(FLAGS_device),
          .seed = SeedFlag(scenario),
          .method = absl::GetFlag(FLAGS_method).empty() ? "sema" : absl::GetFlag(FLAGS_method),
          .server = absl::GetFlag(FLAGS_server),
          .tls_ca_file = absl::GetFlag(FLAGS_tls_ca),
          .tls_server_name = absl::GetFlag(FLAGS_tls_server_name),
          .token_file = absl::GetFlag(FLAGS_token_file),
          .storage_dir = absl::GetFlag(FLAGS_storage_dir),
          .out = absl::GetFlag(FLAGS_out),
          .pattern = absl::GetFlag(FLAGS_pattern)};
}

WorkerShardOptions WorkerFlags(const Scenario& scenario) {
  WorkerShardOptions options;
  options.worker.server = absl::GetFlag(FLAGS_server);
  options.worker.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.worker.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.worker.shard = absl::GetFlag(FLAGS_shard);
  options.worker.shards = absl::GetFlag(FLAGS_shards);
  options.worker.pattern = absl::GetFlag(FLAGS_pattern);
  options.worker.seed = SeedFlag(scenario);
  options.token_file = absl::GetFlag(FLAGS_token_file);
  options.progress = absl::GetFlag(FLAGS_progress);
  return options;
}

// The scenario with --threads and --rounds applied.
absl::StatusOr<Scenario> ScenarioFlags(const base::FileSystem& fs) {
  FEDCL_ASSIGN_OR_RETURN(Scenario scenario, LoadScenario(fs, absl::GetFlag(FLAGS_scenario)));
  if (absl::GetFlag(FLAGS_threads) >= 0) scenario.config.set_threads(absl::GetFlag(FLAGS_threads));
  if (absl::GetFlag(FLAGS_rounds) > 0) scenario.config.set_rounds(absl::GetFlag(FLAGS_rounds));
  return scenario;
}

absl::Status Run() {
  base::FileSystem& fs = base::FileSystem::Default();
  FEDCL_ASSIGN_OR_RETURN(Scenario scenario, ScenarioFlags(fs));
  FEDCL_ASSIGN_OR_RETURN(SimulationInputs inputs, LoadInputs(fs, scenario));
  // Decoding the data set leaves ~50 MB of freed buffers resident; hand them back so that memory
  // figures (and the machine) see only what the simulation holds.
  malloc_trim(0);
  if (!absl::GetFlag(FLAGS_emit_server_config).empty())
    return EmitServerConfig(scenario, inputs, EmitFlags(scenario), fs);
  if (!absl::GetFlag(FLAGS_report_from).empty())
    return ReportFromServer(scenario, inputs, ReportFromFlags(scenario), fs);
  if (!absl::GetFlag(FLAGS_report_devices).empty())
    return ReportDevices(fs, absl::GetFlag(FLAGS_report_devices));
  if (absl::GetFlag(FLAGS_device) >= 0)
    return RunDevice(scenario, inputs, DeviceFlags(scenario), fs);
  if (absl::GetFlag(FLAGS_worker))
    return RunWorkerShard(scenario, inputs, WorkerFlags(scenario), fs);
  if (absl::GetFlag(FLAGS_validate_only)) return ValidateOnly(scenario);
  if (scenario.config.has_continual()) {
    return RunContinualScenario(scenario, inputs,
                                {.out = absl::GetFlag(FLAGS_out),
                                 .progress = absl::GetFlag(FLAGS_progress),
                                 .pattern = absl::GetFlag(FLAGS_pattern)},
                                fs);
  }
  if (absl::GetFlag(FLAGS_tune) && !scenario.config.has_tuning()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tune: ", absl::GetFlag(FLAGS_scenario), " has no tuning block"));
  }
  return RunFederatedScenario(scenario, inputs,
                              {.out = absl::GetFlag(FLAGS_out),
                               .progress = absl::GetFlag(FLAGS_progress),
                               .tune = absl::GetFlag(FLAGS_tune)},
                              fs);
}

}  // namespace
}  // namespace fedcl::sim

int main(int argc, char** argv) {
  if (!fedcl::base::ParseCommandLine(
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
