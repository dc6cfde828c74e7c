// The in-process simulation engine: one fl::Coordinator (the server's code) and N virtual clients
// running the devices' code (device::DeviceSession with the "recipe" learner, round_runner.h)
// through a device::InProcessPort, on a virtual clock.
//
//   FEDCL_ASSIGN_OR_RETURN(sim::SimulationInputs inputs, sim::LoadInputs(fs, scenario));  // world/
//   sim::Engine engine(scenario, inputs);
//   FEDCL_ASSIGN_OR_RETURN(sim::RunResult result,
//                          engine.Run(scenario.methods[0], scenario.patterns[0], /*seed=*/1,
//                                     &observer));
//
// One round t:
//   1. the participation process advances every client to t (draws keyed by (seed, client, t));
//   2. participants ask the coordinator for work through their sessions, as devices do;
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
// results whatever the thread count. A method with a round policy (fedbuff) runs asynchronously
// instead, on ticks of the virtual clock (async_engine.cc has its contract).
#ifndef FEDCL_SIM_RUN_ENGINE_H_
#define FEDCL_SIM_RUN_ENGINE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/fl/coordinator.h"
#include "sim/run/results.h"
#include "sim/world/inputs.h"
#include "sim/world/participation.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

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

#endif  // FEDCL_SIM_RUN_ENGINE_H_
