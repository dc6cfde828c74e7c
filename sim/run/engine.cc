#include "sim/run/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/base/clock.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/device/in_process_port.h"
#include "core/fl/client_model.h"
#include "core/fl/coordinator.h"
#include "core/nn/training.h"
#include "sim/run/process_memory.h"
#include "sim/run/round_runner.h"
#include "sim/world/client_data.h"
#include "sim/world/participation.h"

namespace fedcl::sim {
namespace {

constexpr int kMaxWeightPairs = 2000;
// The weight error is measured on the first clients only, so that a million-client run does not
// copy every record at each evaluation.
constexpr int kMaxWeightErrorClients = 10000;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Engine::Engine(const Scenario& scenario, const SimulationInputs& inputs)
    : scenario_(scenario), inputs_(inputs) {}

absl::StatusOr<RunResult> Engine::Run(const MethodSpec& method, const PatternSpec& pattern,
                                      uint64_t seed, RunObserver* observer,
                                      ParticipationMap* map) const {
  const auto started = std::chrono::steady_clock::now();
  const v1::SimScenario& config = scenario_.config;
  const int num_clients = scenario_.num_clients();
  RunResult result;
  result.method = method.label;
  result.pattern = pattern.name;
  result.seed = seed;

  // Every method of a seed starts from the same model, data partition and participation draws.
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> base_model,
                         MakeModel(scenario_, inputs_, seed));
  FEDCL_ASSIGN_OR_RETURN(std::vector<fl::StoredModule> initial,
                         fl::CreateInitialModules(*base_model, scenario_.modules, seed));
  FEDCL_ASSIGN_OR_RETURN(ClientData client_data,
                         ClientData::Create(scenario_, inputs_.train, seed));
  const std::vector<float> base_probabilities = client_data.Probabilities(scenario_, seed);
  // What each client's participation averages to under the pattern (p_n unless it drifts): the
  // rate known_prob is told and FedAU's weights are measured against.
  std::vector<float> probabilities = base_probabilities;
  for (float& p : probabilities) p = static_cast<float>(LongRunProbability(pattern, p));

  FEDCL_ASSIGN_OR_RETURN(std::shared_ptr<const fl::AggregationRule> rule,
                         fl::CreateAggregationRule(method.aggregator));
  base::ManualClock clock(absl::UnixEpoch());
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<fl::Coordinator> coordinator,
                         fl::Coordinator::Create(CoordinatorOptionsFor(method, probabilities),
                                                 clock, nullptr, std::move(initial)));
  for (int n = 0; n < num_clients; ++n) FEDCL_RETURN_IF_ERROR(coordinator->Enroll(n).status());
  device::ServerInfo server;
  server.protocol = std::string(device::kProtocol);
  device::InProcessPort port(*coordinator, server);

  const AvailabilityTrace* trace = inputs_.trace ? &*inputs_.trace : nullptr;
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<ParticipationProcess> process,
                         ParticipationProcess::Create(pattern, base_probabilities, seed, trace));
  RoundRunner runner(scenario_, inputs_, client_data, seed, config.threads(), server);
  // The global model, as the server would evaluate it.
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> eval_model,
                         MakeModel(scenario_, inputs_, seed));
  fl::ClientModel evaluator(std::move(eval_model));

  if (map != nullptr) {
    map->clients = std::min(num_clients, config.heatmap_clients());
    map->rounds = config.rounds();
    map->participated.assign(static_cast<size_t>(map->clients) * map->rounds, 0);
  }

  double now_s = 0.0;
  int64_t bytes_up = 0, bytes_down = 0;
  double last_train_loss = 0.0;
  int64_t last_participants = 0;
  auto evaluate = [&](int64_t rounds_done) -> absl::Status {
    EvalPoint point;
    point.round = rounds_done;
    for (const fl::ModuleSnapshot& module : coordinator->Modules()) {
      FEDCL_RETURN_IF_ERROR(evaluator.Install(module.spec, module.version, *module.values));
    }
    const nn::EvalResult eval =
        nn::Evaluate(evaluator.model(), inputs_.test.images, inputs_.test.labels, 256);
    point.accuracy = eval.accuracy;
    point.loss = eval.loss;
    point.train_loss = last_train_loss;
    point.participants = last_participants;
    point.bytes_up = bytes_up;
    point.bytes_down = bytes_down;
    point.wall_seconds = SecondsSince(started);
    point.virtual_seconds = now_s;
    if (rule->estimates_inverse_participation()) {
      point.weight_error =
          WeightError(coordinator->Clients(0, kMaxWeightErrorClients), probabilities);
    }
    result.evals.push_back(point);
    if (observer != nullptr) observer->OnEval(point);
    return absl::OkStatus();
  };

  result.setup_seconds = SecondsSince(started);
  for (int64_t t = 0; t < config.rounds(); ++t) {
    clock.Set(absl::UnixEpoch() + absl::Seconds(now_s));
    process->Advance(t, now_s);
    const std::vector<uint32_t> participants = process->Participants(0, process->num_clients());
    if (map != nullptr) {
      for (uint32_t n : participants) {
        if (static_cast<int>(n) >= map->clients) break;
        map->participated[static_cast<size_t>(n) * map->rounds + t] = 1;
      }
    }
    FEDCL_ASSIGN_OR_RETURN(RoundOutcome outcome, runner.Run(port, participants, t, now_s));
    result.stragglers += outcome.stragglers;
    result.dropouts += outcome.dropouts;
    bytes_down += outcome.bytes_down;
    bytes_up += outcome.bytes_up;
    now_s += outcome.seconds;
    clock.Set(absl::UnixEpoch() + absl::Seconds(now_s));
    // Every participant has reported: this process is the barrier's one reporter, as each worker
    // of a sharded run is one of its K.
    FEDCL_ASSIGN_OR_RETURN(fl::Coordinator::ReportResult reported, coordinator->Report(0, 1, t));
    FEDCL_RETURN_IF_ERROR(reported.close_status);
    for (const fl::RoundReport& report : coordinator->TakeRoundReports()) {
      last_participants = report.participants;
      last_train_loss = report.mean_loss;
      result.updates += report.participants;
    }
    if (observer != nullptr) observer->OnRound(t + 1, last_participants);
    if ((t + 1) % config.eval_every() == 0 || t + 1 == config.rounds()) {
      FEDCL_RETURN_IF_ERROR(evaluate(t + 1));
    }
  }

  result.aggregator_bytes = coordinator->aggregator_memory_bytes();
  result.rss_bytes = CurrentRssBytes();
  if (rule->estimates_inverse_participation()) {
    for (const fl::ClientStatus& client : coordinator->Clients(0, kMaxWeightPairs)) {
      const float p = probabilities[client.record.id];
      if (p > 0) result.inverse_probability_vs_weight.emplace_back(1.0 / p, client.current_weight);
    }
  }
  result.wall_seconds = SecondsSince(started);
  return result;
}

fl::CoordinatorOptions CoordinatorOptionsFor(const MethodSpec& method,
                                             absl::Span<const float> probabilities) {
  fl::CoordinatorOptions options;
  options.aggregator = method.aggregator;
  options.recipe = method.recipe;
  // Rounds close when every participant has reported: the engine is the barrier's one reporter.
  options.round = {.name = "barrier", .round_duration = absl::Hours(24 * 365), .reporters = 1};
  absl::StatusOr<std::shared_ptr<const fl::AggregationRule>> rule =
      fl::CreateAggregationRule(method.aggregator);
  if (rule.ok() && (*rule)->needs_participation_probability()) {
    for (size_t n = 0; n < probabilities.size(); ++n) {
      // A rate of 0 (sine-cutoff's clients with small p_n) is a client that never takes part.
      if (probabilities[n] > 0) options.participation_probability[n] = probabilities[n];
    }
  }
  return options;
}

double WeightError(absl::Span<const fl::ClientStatus> clients,
                   absl::Span<const float> probabilities) {
  double error = 0.0;
  int64_t counted = 0;
  for (const fl::ClientStatus& client : clients) {
    const double p = probabilities[client.record.id];
    if (!(p > 0)) continue;  // never takes part under the pattern: no weight to approach
    error += std::abs(client.current_weight - 1.0 / p) * p;
    ++counted;
  }
  return counted == 0 ? 0.0 : error / static_cast<double>(counted);
}

}  // namespace fedcl::sim
