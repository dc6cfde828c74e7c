// fedcl-sim's modes, one function each, each in its own file under sim/modes/. main.cc reads the
// command line, loads the scenario and its inputs (with --threads and --rounds applied), fills
// the options of the mode the flags ask for and calls it:
//
//   --emit_server_config=DIR   EmitServerConfig       emit_server_config.cc
//   --report_from=FILE         ReportFromServer       report_from.cc
//   --report_devices=DIR       ReportDevices          report_devices.cc
//   --device=D                 RunDevice              device.cc
//   --worker                   RunWorkerShard         worker.cc
//   --validate_only            ValidateOnly           validate.cc
//   (a continual scenario)     RunContinualScenario   continual.cc
//   (otherwise)                RunFederatedScenario   federated.cc (tune.cc first with --tune)
//
// Each mode prints what it did on stdout (progress goes to stderr) and returns the first error,
// prefixed with the run it happened in.
#ifndef FEDCL_SIM_MODES_MODES_H_
#define FEDCL_SIM_MODES_MODES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/base/filesystem.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "sim/run/worker.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// Every method × pattern × seed of a federated scenario in this process (seeds outermost, so an
// interrupted run still compares the methods): metrics.jsonl as the runs go, then summary.json
// and report.html.
struct FederatedRunOptions {
  std::string out = "out/sim";  // the output directory, created if missing
  bool progress = true;         // progress lines on stderr
  bool tune = false;            // tune the methods first (the scenario's tuning block)
};
absl::Status RunFederatedScenario(const Scenario& scenario, const SimulationInputs& inputs,
                                  const FederatedRunOptions& options, base::FileSystem& fs);

// A scenario with a tuning block: runs every method's grid on a validation split of the
// training set and returns the scenario with each method at its selected setting (and no tuning
// block); writes tuning.json and tuned_methods.textproto to options.out (tune.cc has the rules).
// RunFederatedScenario calls it first with options.tune (fedcl-sim --tune).
struct TunedScenario {
  Scenario scenario;     // each method at its selected setting, without the tuning block
  v1::SimTuning record;  // every grid point's score and the selection (tuning.json)
};
absl::StatusOr<TunedScenario> TuneMethods(const Scenario& scenario, const SimulationInputs& inputs,
                                          const FederatedRunOptions& options, base::FileSystem& fs);

// Every continual method on every seed of a continual scenario, side by side on the same streams:
// metrics.jsonl after each run, then summary.json, report.html and the table on stdout.
struct ContinualRunOptions {
  std::string out = "out/sim";  // the output directory, created if missing
  bool progress = true;         // a line per run and per task on stderr
  std::string pattern;          // the participation pattern to replay; empty = the first
};
absl::Status RunContinualScenario(const Scenario& scenario, const SimulationInputs& inputs,
                                  const ContinualRunOptions& options, base::FileSystem& fs);

// Prints that the scenario (already loaded and checked, with its input files) is valid.
absl::Status ValidateOnly(const Scenario& scenario);

// One worker shard of a multi-process run against a fedcl-server (sim/run/worker.h).
struct WorkerShardOptions {
  WorkerOptions worker;    // worker.pattern empty = the scenario's first; worker.token unused
  std::string token_file;  // the worker's bearer token; empty = none
  bool progress = true;    // progress lines on stderr
};
absl::Status RunWorkerShard(const Scenario& scenario, const SimulationInputs& inputs,
                            const WorkerShardOptions& options, const base::FileSystem& fs);

// Writes DIR/server.textproto and DIR/initial.ckpt: what fedcl-server needs to run `method` of
// the scenario with `shards` workers (aggregator, recipe, round.shards, evaluation on the
// scenario's test set, known_prob's p_n, tokens and TLS files as given; the model the
// in-process run starts from for `seed`). InvalidArgument for a method the scenario lacks.
struct ServerConfigRequest {
  std::string dir;                          // where both files go, created if missing
  std::string state_dir;                    // the server's state_dir
  std::string method;                       // a method label of the scenario; empty = the first
  uint64_t seed = 1;                        // the run's seed
  int shards = 1;                           // worker shards (round.shards)
  std::string tokens_file;                  // the server's tokens file; empty = none
  std::string tls_cert_file, tls_key_file;  // the server's certificate and key; empty = none
  std::string pattern;  // the run's participation pattern (known_prob's rates); empty = the first
};
absl::Status EmitServerConfig(const Scenario& scenario, const SimulationInputs& inputs,
                              const ServerConfigRequest& request, base::FileSystem& fs);

// metrics.jsonl, summary.json and report.html in `out` for a multi-process run, from the
// fedcl-server metrics log at `server_metrics` (sim/report/server_metrics.h). The report covers
// the run that happened: this method, pattern and seed.
struct ReportFromOptions {
  std::string server_metrics;   // the server's metrics.jsonl
  std::string out = "out/sim";  // the output directory, created if missing
  std::string method;           // the run's method label; empty = the scenario's first
  std::string pattern;          // the run's pattern; empty = the scenario's first
  uint64_t seed = 1;            // the run's seed
};
absl::Status ReportFromServer(Scenario scenario, const SimulationInputs& inputs,
                              const ReportFromOptions& options, base::FileSystem& fs);

// Device `device` of a continual scenario as this process, through the edge SDK against a
// fedcl-server (sim/run/cl_device.h); its report goes to out/device-<device>.report.
// InvalidArgument for a scenario that is not continual or options that fail Validate.
struct DeviceOptions {
  int device = 0;               // in [0, clients)
  uint64_t seed = 1;            // the run's seed
  std::string method = "sema";  // the SDK's learner
  std::string server;           // the fedcl-server's gRPC target
  std::string tls_ca_file;      // its root certificates; empty = plaintext
  std::string tls_server_name;  // the name on its certificate, if not the host
  std::string token_file;       // the device's bearer token; empty = none
  std::string storage_dir;      // the device's state (required)
  std::string out = "out/sim";  // where the device report goes, created if missing
  std::string pattern;          // the participation pattern; empty = the scenario's first
  // InvalidArgument naming the flag: a storage directory is required.
  absl::Status Validate() const;
};
absl::Status RunDevice(const Scenario& scenario, const SimulationInputs& inputs,
                       const DeviceOptions& options, base::FileSystem& fs);

// Prints the table of a continual run with real processes from the device reports in `dir`
// (sim/report/device_reports.h).
absl::Status ReportDevices(const base::FileSystem& fs, const std::string& dir);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_MODES_MODES_H_
