// One simulated round's participants, trained in parallel: the part of the engine that the
// in-process simulation and the multi-process workers share. Only how a participant reaches the
// coordinator differs: the Coordinator object itself, or a real fedcl-server over gRPC.
//
// For each participant, in this order: ask for work; work out its round time from its device
// profile (download, I·B samples, upload); a straggler (over the deadline) or a dropout (its
// keyed dropout draw, or its trace window closing first) stops there, since its update would not
// count; otherwise install the modules on this thread's model replica, train with
// fl::TrainLocally (minibatches keyed by (seed, client, round)) and submit.
#ifndef FEDCL_SIM_RUN_ROUND_RUNNER_H_
#define FEDCL_SIM_RUN_ROUND_RUNNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/fl/coordinator.h"
#include "core/fl/local_trainer.h"
#include "sim/world/client_data.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"
#include "sim/world/trace.h"
#include "tbb/enumerable_thread_specific.h"
#include "tbb/task_arena.h"

namespace fedcl::sim {

// How a participant reaches the coordinator. Implementations are called from several threads.
class CoordinatorEndpoint {
 public:
  virtual ~CoordinatorEndpoint() = default;
  virtual absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client) = 0;
  // The module's values at `info.version` (shared; never modified by the caller).
  virtual absl::StatusOr<fl::ModuleSnapshot> GetModule(fl::ClientId client,
                                                       const fl::ModuleInfo& info) = 0;
  virtual absl::Status Submit(fl::ClientId client, int64_t round, fl::LocalUpdate& update) = 0;
};

// The Coordinator in this process.
class InProcessEndpoint final : public CoordinatorEndpoint {
 public:
  explicit InProcessEndpoint(fl::Coordinator& coordinator) : coordinator_(coordinator) {}
  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client) override;
  absl::StatusOr<fl::ModuleSnapshot> GetModule(fl::ClientId client,
                                               const fl::ModuleInfo& info) override;
  absl::Status Submit(fl::ClientId client, int64_t round, fl::LocalUpdate& update) override;

 private:
  fl::Coordinator& coordinator_;
};

struct RoundOutcome {
  int64_t counted = 0;     // updates submitted
  int64_t stragglers = 0;  // missed the deadline
  int64_t dropouts = 0;    // left mid-round
  int64_t bytes_down = 0;  // modules sent to participants (stragglers and dropouts included)
  int64_t bytes_up = 0;    // updates sent
  double seconds = 0.0;    // round length on the virtual clock
};

class RoundRunner {
 public:
  // `threads` workers (0 = all cores). Everything passed must outlive the runner.
  RoundRunner(const Scenario& scenario, const SimulationInputs& inputs,
              const ClientData& client_data, uint64_t seed, int threads);

  // Runs round `round` for `participants`, starting at virtual time `now_s`.
  absl::StatusOr<RoundOutcome> Run(CoordinatorEndpoint& endpoint,
                                   absl::Span<const uint32_t> participants, int64_t round,
                                   double now_s);

 private:
  enum class Fate { kCounted, kAlreadyCounted, kRoundClosed, kStraggler, kDropout, kNoData };
  struct Participant {
    Fate fate = Fate::kCounted;
    double seconds = 0.0;
    int64_t bytes_down = 0, bytes_up = 0;
    absl::Status status;
  };
  Participant RunOne(CoordinatorEndpoint& endpoint, uint32_t client, int64_t round, double now_s);

  const Scenario& scenario_;
  const SimulationInputs& inputs_;
  const ClientData& client_data_;
  const uint64_t seed_;
  tbb::task_arena arena_;
  tbb::enumerable_thread_specific<std::unique_ptr<fl::ClientModel>> replicas_;
  tbb::enumerable_thread_specific<std::vector<int>> scratch_;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_ROUND_RUNNER_H_
