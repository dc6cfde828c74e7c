// The in-process simulation engine: one fl::Coordinator (the server's code) and N virtual clients
// training with fl::TrainLocally (the devices' code) on a virtual clock.
//
//   FEDCL_ASSIGN_OR_RETURN(sim::SimulationInputs inputs, sim::LoadInputs(fs, scenario));
//   sim::Engine engine(scenario, inputs);
//   FEDCL_ASSIGN_OR_RETURN(sim::RunResult result,
//                          engine.Run(scenario.methods[0], scenario.patterns[0], /*seed=*/1,
//                                     &observer));
//
// One round t:
//   1. the participation process advances every client to t (draws keyed by (seed, client, t));
//   2. participants ask the coordinator for work, exactly as a device's GetWork;
//   3. each one's round time on the virtual clock comes from its device profile (download,
//      I·B samples, upload); one that would miss the deadline is a straggler, one that drops out
//      (dropout probability, or its trace window ends first) is lost; neither trains, since its
//      update would not count;
//   4. the others train in parallel on oneTBB (a model replica per worker thread, so a dormant
//      client holds no model state) and submit to the coordinator, which folds each update as it
//      arrives in exact fixed-point arithmetic;
//   5. the round closes (every participant has reported) and the clock moves on by the round's
//      length: the slowest counted participant, or the deadline if someone missed it.
// Because every draw is keyed and the fold is order-independent, a seed gives bit-identical
// results whatever the thread count.
#ifndef FEDCL_SIM_ENGINE_H_
#define FEDCL_SIM_ENGINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/filesystem.h"
#include "core/data/dataset.h"
#include "core/fl/coordinator.h"
#include "core/nn/model.h"
#include "sim/scenario.h"
#include "sim/trace.h"

namespace fedcl::sim {

// What every run of a scenario shares: the data, the backbone checkpoint, traces and profiles.
struct SimulationInputs {
  data::Dataset train;
  data::Dataset test;
  std::unique_ptr<nn::Model> pretrained;  // null: each run initialises the model from its seed
  std::optional<AvailabilityTrace> trace;
  DeviceProfiles profiles{DeviceProfile{}};
};

absl::StatusOr<SimulationInputs> LoadInputs(const base::FileSystem& fs, const Scenario& scenario);

struct EvalPoint {
  int64_t round = 0;             // rounds completed
  double accuracy = 0.0;         // test accuracy of the global model
  double loss = 0.0;             // test loss
  double train_loss = 0.0;       // mean local training loss of this round's participants
  int64_t participants = 0;      // updates counted in the last round
  int64_t bytes_up = 0;          // cumulative, updates sent
  int64_t bytes_down = 0;        // cumulative, modules sent to participants
  double weight_error = -1.0;    // FedAU: mean |ω_n − 1/p_n|·p_n over the first 10,000
                                 // clients; -1 if not FedAU
  double wall_seconds = 0.0;     // since the run started
  double virtual_seconds = 0.0;  // virtual clock
};

struct RunResult {
  std::string method;
  std::string pattern;
  uint64_t seed = 0;
  std::vector<EvalPoint> evals;
  double wall_seconds = 0.0;
  double setup_seconds = 0.0;  // before round 0: partition, p_n, enrolment
  int64_t updates = 0;         // counted client updates
  int64_t stragglers = 0;      // missed the deadline
  int64_t dropouts = 0;        // left mid-round
  int64_t aggregator_bytes = 0;
  int64_t rss_bytes = 0;  // resident set at the end, with every client still held
  // FedAU runs: (1/p_n, ω_n) at the end for the first clients (up to 2,000), for the report.
  std::vector<std::pair<double, double>> inverse_probability_vs_weight;
};

// Which of the first `clients` clients took part in each round (one bit each), for the report's
// heat-map.
struct ParticipationMap {
  int clients = 0;
  int64_t rounds = 0;
  std::vector<uint8_t> participated;  // clients × rounds, row-major, 0 or 1
};

class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void OnRound(int64_t round, int64_t participants) {}
  virtual void OnEval(const EvalPoint& point) {}
};

// The coordinator options of a simulated run: rounds close when every participant has reported,
// and known_prob gets the true p_n.
fl::CoordinatorOptions CoordinatorOptionsFor(const MethodSpec& method,
                                             absl::Span<const float> probabilities);
// FedAU's weight error: the mean over `clients` of |ω_n − 1/p_n| · p_n (relative to 1/p_n).
double WeightError(absl::Span<const fl::ClientStatus> clients,
                   absl::Span<const float> probabilities);

class Engine {
 public:
  Engine(const Scenario& scenario, const SimulationInputs& inputs);

  // Runs one method under one pattern with one seed. `map`, if not null, receives the
  // participation of the first heatmap_clients clients.
  absl::StatusOr<RunResult> Run(const MethodSpec& method, const PatternSpec& pattern, uint64_t seed,
                                RunObserver* observer, ParticipationMap* map = nullptr) const;

 private:
  const Scenario& scenario_;
  const SimulationInputs& inputs_;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_ENGINE_H_
