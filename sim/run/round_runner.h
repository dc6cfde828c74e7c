// One simulated round's participants, trained in parallel: the part of the engine that the
// in-process simulation and the multi-process workers share. Only how a participant reaches the
// coordinator differs: a device::InProcessPort over the Coordinator object itself, or a
// proto::GrpcPort to a real fedcl-server.
//
// Each participant runs the device code fedcl-client's recipe devices run: a
// device::DeviceSession over a cl::Learner with the "recipe" method (one learner per thread,
// a fresh session per participant, since a virtual client keeps nothing between rounds): Begin
// asks for work, and before anything is downloaded the runner works out the participant's round
// time from its device profile (download, I·B samples, upload); a straggler (over the deadline)
// or a dropout (its keyed dropout draw, or its trace window closing first) declines the round,
// since its update would not count. Otherwise the session downloads the round's modules,
// device::TrainRecipeRound trains (minibatches keyed by (seed, client, round)) and the session
// submits.
#ifndef FEDCL_SIM_RUN_ROUND_RUNNER_H_
#define FEDCL_SIM_RUN_ROUND_RUNNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/cl/learner.h"
#include "core/device/federation_port.h"
#include "sim/world/client_data.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"
#include "sim/world/trace.h"
#include "tbb/enumerable_thread_specific.h"
#include "tbb/task_arena.h"

namespace fedcl::sim {

struct RoundOutcome {
  int64_t counted = 0;     // updates submitted
  int64_t stragglers = 0;  // missed the deadline
  int64_t dropouts = 0;    // left mid-round
  // Trained but had nothing to send: local training diverged (a non-finite loss, whose learning
  // the session discards) or moved nothing. A learning rate too large for the model does this;
  // tuning grids meet it, and the run goes on without those updates.
  int64_t failed_trainings = 0;
  int64_t bytes_down = 0;  // modules sent to participants (stragglers and dropouts included)
  int64_t bytes_up = 0;    // updates sent
  double seconds = 0.0;    // round length on the virtual clock
};

class RoundRunner {
 public:
  // `threads` workers (0 = all cores). Everything passed must outlive the runner.
  // `server` is what the clients' Join reported (they have joined: the runner does not join).
  RoundRunner(const Scenario& scenario, const SimulationInputs& inputs,
              const ClientData& client_data, uint64_t seed, int threads, device::ServerInfo server);

  // Runs round `round` for `participants`, starting at virtual time `now_s`. `port` must be
  // thread-safe.
  absl::StatusOr<RoundOutcome> Run(device::FederationPort& port,
                                   absl::Span<const uint32_t> participants, int64_t round,
                                   double now_s);

  // Asynchronous rounds: `participants` take work at virtual time `now_s` for `round` (the
  // server's current version), train, and submit through `port`, which the engine makes hold
  // the updates until they arrive. There is no deadline; a dropout or a client whose update the
  // server already holds for `round` does not start. `draw` keys the dropout draw and the
  // minibatches (a device may start more than once per version).
  struct Started {
    uint32_t client = 0;
    double seconds = 0.0;  // download, training and upload on the device's profile
    int64_t bytes_down = 0, bytes_up = 0;
  };
  struct StartOutcome {
    std::vector<Started> started;
    int64_t dropouts = 0;
    int64_t failed_trainings = 0;  // as RoundOutcome's
    int64_t bytes_down = 0;        // dropouts included
  };
  absl::StatusOr<StartOutcome> Start(device::FederationPort& port,
                                     absl::Span<const uint32_t> participants, int64_t round,
                                     double now_s, uint64_t draw);

 private:
  enum class Fate {
    kCounted,
    kAlreadyCounted,
    kRoundClosed,
    kStraggler,
    kDropout,
    kNoData,
    kTrainingFailed,
  };
  struct Participant {
    Fate fate = Fate::kCounted;
    double seconds = 0.0;
    int64_t bytes_down = 0, bytes_up = 0;
    absl::Status status;
  };
  // A thread's device: the learner the participants it runs share, and their sessions' mutex.
  struct Replica {
    std::unique_ptr<cl::Learner> learner;
    std::mutex mu;
  };
  // `draw` keys the dropout draw and the minibatches: the round when synchronous.
  Participant RunOne(device::FederationPort& port, uint32_t client, int64_t round, double now_s,
                     uint64_t draw, bool asynchronous);
  // Whether the participant takes part in the round `work` offers (sets its fate otherwise).
  bool TakesPart(const fl::WorkAssignment& work, uint32_t client, int64_t round, double now_s,
                 uint64_t draw, bool asynchronous, absl::Span<const int> indices,
                 Participant& out) const;

  const Scenario& scenario_;
  const SimulationInputs& inputs_;
  const ClientData& client_data_;
  // Per client: the error feedback its compressed uploads owe, by module (empty: none).
  std::vector<std::map<std::string, std::vector<float>>> residuals_;
  const uint64_t seed_;
  const device::ServerInfo server_;
  tbb::task_arena arena_;
  tbb::enumerable_thread_specific<std::unique_ptr<Replica>> replicas_;
  tbb::enumerable_thread_specific<std::vector<int>> scratch_;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_ROUND_RUNNER_H_
