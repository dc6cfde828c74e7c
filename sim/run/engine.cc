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
#include "sim/run/run_world.h"
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

absl::StatusOr<std::unique_ptr<RunWorld>> MakeRunWorld(const Scenario& scenario,
                                                       const SimulationInputs& inputs,
                                                       const MethodSpec& method,
                                                       const PatternSpec& pattern, uint64_t seed) {
  auto world = std::make_unique<RunWorld>();
  world->started = std::chrono::steady_clock::now();
  const int num_clients = scenario.num_clients();
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> base_model, MakeModel(scenario, inputs, seed));
  FEDCL_ASSIGN_OR_RETURN(std::vector<fl::StoredModule> initial,
                         fl::CreateInitialModules(*base_model, scenario.modules, seed));
  FEDCL_ASSIGN_OR_RETURN(ClientData client_data, ClientData::Create(scenario, inputs.train, seed));
  world->client_data = std::make_unique<ClientData>(std::move(client_data));
  world->base_probabilities = world->client_data->Probabilities(scenario, seed);
  world->probabilities = world->base_probabilities;
  for (float& p : world->probabilities) p = static_cast<float>(LongRunProbability(pattern, p));

  FEDCL_ASSIGN_OR_RETURN(world->rule, fl::CreateAggregationRule(method.aggregator));
  FEDCL_ASSIGN_OR_RETURN(
      world->coordinator,
      fl::Coordinator::Create(CoordinatorOptionsFor(method, world->probabilities), world->clock,
                              nullptr, std::move(initial)));
  for (int n = 0; n < num_clients; ++n) {
    FEDCL_RETURN_IF_ERROR(world->coordinator->Enroll(n).status());
  }
  world->server.protocol = std::string(device::kProtocol);
  world->port = std::make_unique<device::InProcessPort>(*world->coordinator, world->server);
  const AvailabilityTrace* trace = inputs.trace ? &*inputs.trace : nullptr;
  FEDCL_ASSIGN_OR_RETURN(world->process, ParticipationProcess::Create(
                                             pattern, world->base_probabilities, seed, trace));
  world->runner = std::make_unique<RoundRunner>(scenario, inputs, *world->client_data, seed,
                                                scenario.config.threads(), world->server);
  // The global model, as the server would evaluate it.
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> eval_model, MakeModel(scenario, inputs, seed));
  world->evaluator = std::make_unique<fl::ClientModel>(std::move(eval_model));
  return world;
}

absl::Status RunWorld::Evaluate(const SimulationInputs& inputs, int64_t rounds_done,
                                RunResult& result, RunObserver* observer) {
  EvalPoint point;
  point.round = rounds_done;
  for (const fl::ModuleSnapshot& module : coordinator->Modules()) {
    FEDCL_RETURN_IF_ERROR(evaluator->Install(module.spec, module.version, *module.values));
  }
  const nn::EvalResult eval =
      nn::Evaluate(evaluator->model(), inputs.test.images, inputs.test.labels, 256);
  point.accuracy = eval.accuracy;
  point.loss = eval.loss;
  point.train_loss = last_train_loss;
  point.participants = last_participants;
  point.updates = updates;
  point.bytes_up = bytes_up;
  point.bytes_down = bytes_down;
  point.wall_seconds = SecondsSince(started);
  point.virtual_seconds = now_s;
  if (rule->trains_from_client_base()) {
    for (const fl::ModuleSnapshot& module : coordinator->ClientMeanModules()) {
      FEDCL_RETURN_IF_ERROR(evaluator->Install(module.spec, module.version, *module.values));
    }
    point.local_mean_accuracy =
        nn::Evaluate(evaluator->model(), inputs.test.images, inputs.test.labels, 256).accuracy;
  }
  if (weights_against_pattern && rule->estimates_inverse_participation()) {
    point.weight_error =
        WeightError(coordinator->Clients(0, kMaxWeightErrorClients), probabilities);
  }
  result.evals.push_back(point);
  if (observer != nullptr) observer->OnEval(point);
  return absl::OkStatus();
}

void RunWorld::TakeRoundReports(RunResult& result) {
  for (const fl::RoundReport& report : coordinator->TakeRoundReports()) {
    last_participants = report.participants;
    last_train_loss = report.mean_loss;
    updates += report.participants;
    result.updates += report.participants;
  }
}

void RunWorld::Finish(RunResult& result) {
  result.aggregator_bytes = coordinator->aggregator_memory_bytes();
  result.rss_bytes = CurrentRssBytes();
  if (weights_against_pattern && rule->estimates_inverse_participation()) {
    for (const fl::ClientStatus& client : coordinator->Clients(0, kMaxWeightPairs)) {
      const float p = probabilities[client.record.id];
      if (p > 0) result.inverse_probability_vs_weight.emplace_back(1.0 / p, client.current_weight);
    }
  }
  result.wall_seconds = SecondsSince(started);
}

absl::StatusOr<RunResult> Engine::Run(const MethodSpec& method, const PatternSpec& pattern,
                                      uint64_t seed, RunObserver* observer,
                                      ParticipationMap* map) const {
  const v1::SimScenario& config = scenario_.config;
  RunResult result;
  result.method = method.label;
  result.pattern = pattern.name;
  result.seed = seed;
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<RunWorld> world,
                         MakeRunWorld(scenario_, inputs_, method, pattern, seed));
  result.setup_seconds = SecondsSince(world->started);
  if (method.asynchronous()) {
    FEDCL_RETURN_IF_ERROR(
        RunAsynchronous(scenario_, inputs_, method, seed, *world, result, observer));
    world->Finish(result);
    return result;
  }

  if (map != nullptr) {
    map->clients = std::min(scenario_.num_clients(), config.heatmap_clients());
    map->rounds = config.rounds();
    map->participated.assign(static_cast<size_t>(map->clients) * map->rounds, 0);
  }
  for (int64_t t = 0; t < config.rounds(); ++t) {
    world->clock.Set(absl::UnixEpoch() + absl::Seconds(world->now_s));
    world->process->Advance(t, world->now_s);
    const std::vector<uint32_t> participants =
        world->process->Participants(0, world->process->num_clients());
    if (map != nullptr) {
      for (uint32_t n : participants) {
        if (static_cast<int>(n) >= map->clients) break;
        map->participated[static_cast<size_t>(n) * map->rounds + t] = 1;
      }
    }
    FEDCL_ASSIGN_OR_RETURN(RoundOutcome outcome,
                           world->runner->Run(*world->port, participants, t, world->now_s));
    result.stragglers += outcome.stragglers;
    result.dropouts += outcome.dropouts;
    result.failed_trainings += outcome.failed_trainings;
    world->bytes_down += outcome.bytes_down;
    world->bytes_up += outcome.bytes_up;
    world->now_s += outcome.seconds;
    world->clock.Set(absl::UnixEpoch() + absl::Seconds(world->now_s));
    // Every participant has reported: this process is the barrier's one reporter, as each worker
    // of a sharded run is one of its K.
    FEDCL_ASSIGN_OR_RETURN(fl::Coordinator::ReportResult reported,
                           world->coordinator->Report(0, 1, t));
    FEDCL_RETURN_IF_ERROR(reported.close_status);
    world->TakeRoundReports(result);
    if (observer != nullptr) observer->OnRound(t + 1, world->last_participants);
    if ((t + 1) % config.eval_every() == 0 || t + 1 == config.rounds()) {
      FEDCL_RETURN_IF_ERROR(world->Evaluate(inputs_, t + 1, result, observer));
    }
  }
  world->Finish(result);
  return result;
}

fl::CoordinatorOptions CoordinatorOptionsFor(const MethodSpec& method,
                                             absl::Span<const float> probabilities) {
  fl::CoordinatorOptions options;
  options.aggregator = method.aggregator;
  options.recipe = method.recipe;
  options.upload_compression = method.upload;
  // Rounds close when every participant has reported: the engine is the barrier's one reporter.
  options.round = {.name = "barrier", .round_duration = absl::Hours(24 * 365), .reporters = 1};
  if (method.asynchronous()) {
    // Buffers close on their count; a virtual year stands for "never on time".
    options.round = *method.round;
    options.round.round_duration = absl::Hours(24 * 365);
  }
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
