// What one federated run of the in-process engine works on, built once and shared by the
// synchronous loop (engine.cc) and the buffered asynchronous one (async_engine.cc): the model the
// run starts from, the coordinator with its clients enrolled, the participation process, the
// round runner and the evaluator. Internal to sim/run.
#ifndef FEDCL_SIM_RUN_RUN_WORLD_H_
#define FEDCL_SIM_RUN_RUN_WORLD_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/clock.h"
#include "core/device/in_process_port.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/client_model.h"
#include "core/fl/coordinator.h"
#include "sim/run/results.h"
#include "sim/run/round_runner.h"
#include "sim/world/client_data.h"
#include "sim/world/participation.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

struct RunWorld {
  std::chrono::steady_clock::time_point started;
  // p_n as drawn, and what each averages to under the pattern (what known_prob is told and
  // FedAU's weights are measured against).
  std::vector<float> base_probabilities, probabilities;
  std::shared_ptr<const fl::AggregationRule> rule;
  base::ManualClock clock{absl::UnixEpoch()};
  std::unique_ptr<ClientData> client_data;
  std::unique_ptr<fl::Coordinator> coordinator;
  device::ServerInfo server;
  std::unique_ptr<device::InProcessPort> port;
  std::unique_ptr<ParticipationProcess> process;
  std::unique_ptr<RoundRunner> runner;
  std::unique_ptr<fl::ClientModel> evaluator;

  // FedAU's weights are compared with 1/p_n, p_n being per round of the pattern: true for
  // synchronous runs only (an asynchronous run's FedAU counts buffers, whose rate also depends on
  // device speed).
  bool weights_against_pattern = true;
  // Running totals the evaluation points carry.
  double now_s = 0.0;
  int64_t bytes_up = 0, bytes_down = 0, updates = 0;
  double last_train_loss = 0.0;
  int64_t last_participants = 0;

  // Evaluates the coordinator's modules on the test set as point `rounds_done` of `result`.
  absl::Status Evaluate(const SimulationInputs& inputs, int64_t rounds_done, RunResult& result,
                        RunObserver* observer);
  // Totals of the rounds the coordinator closed since the last call.
  void TakeRoundReports(RunResult& result);
  // The end of the run: memory figures and FedAU's (1/p_n, ω_n) pairs.
  void Finish(RunResult& result);
};

// Everything one run of `method` under `pattern` with `seed` starts from: every method of a seed
// starts from the same model, data partition and participation draws.
absl::StatusOr<std::unique_ptr<RunWorld>> MakeRunWorld(const Scenario& scenario,
                                                       const SimulationInputs& inputs,
                                                       const MethodSpec& method,
                                                       const PatternSpec& pattern, uint64_t seed);

// The buffered asynchronous run of a method with a round policy (async_engine.cc has its
// contract).
absl::Status RunAsynchronous(const Scenario& scenario, const SimulationInputs& inputs,
                             const MethodSpec& method, uint64_t seed, RunWorld& world,
                             RunResult& result, RunObserver* observer);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_RUN_WORLD_H_
