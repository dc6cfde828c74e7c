// The simulator's buffered asynchronous run (a method with round_policy "fedbuff"), on the
// virtual clock. The same coordinator and device code as the synchronous engine; only time moves
// differently:
//   - every devices.async_tick_s virtual seconds (default: the median device's round time) the
//     participation pattern advances one step, and each available device that is not already
//     busy takes work: the server's current version v;
//   - it downloads, trains on v and uploads, taking its profile's round time times its slowdown
//     (devices.slowdown_max); its update arrives that much later, when the server may have moved
//     on to v' > v: staleness v' − v;
//   - arrivals are submitted in virtual-time order; the coordinator's fedbuff policy weighs them
//     by staleness, refuses those beyond max_staleness, and closes a buffer every buffer_size
//     accepted updates. `rounds` counts buffers, and the model is evaluated every eval_every.
// Choices algorithms-next.md §1.9a asks a buffered simulation to state:
//   - who starts: every available idle device at each tick (no concurrency cap); availability is
//     the scenario's pattern, one step per tick;
//   - a device already holding an update in the open buffer waits for the next one (the
//     coordinator gives it no work), so a buffer has at most one update per device;
//   - speed: the device profiles times a per-device log-uniform slowdown;
//   - a refused (too stale) update is not a participation, and its learning is dropped: a
//     virtual client keeps nothing between rounds (the SDK's devices keep and re-base theirs).
// Training happens when a device starts, on the version it downloads; its update is held until
// its arrival time, so each start sees exactly the model the server served at that moment. The
// starts of one tick train in parallel; results do not depend on the thread count.
#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "sim/run/run_world.h"

namespace fedcl::sim {
namespace {

// A port whose submissions are held (acknowledged as accepted at once) for the engine to deliver
// when the update arrives; everything else goes to the server.
class HoldingPort final : public device::ForwardingPort {
 public:
  struct Held {
    int64_t round = 0;
    fl::LocalUpdate update;
  };
  explicit HoldingPort(device::FederationPort& server) : ForwardingPort(server) {}

  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                const fl::LocalUpdate& update,
                                                int64_t chunk_bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    held_[client] = {round, update};
    fl::SubmitResult result;
    result.round = round;
    result.weight = 1.0;
    return result;
  }
  std::optional<Held> Take(fl::ClientId client) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = held_.find(client);
    if (it == held_.end()) return std::nullopt;
    Held held = std::move(it->second);
    held_.erase(it);
    return held;
  }

 private:
  std::mutex mu_;
  std::map<fl::ClientId, Held> held_;
};

struct Arrival {
  double time = 0.0;
  int64_t sequence = 0;  // start order: ties in time arrive in the order devices started
  uint32_t client = 0;
  int64_t bytes_up = 0;
  HoldingPort::Held held;
};
struct ArrivesLater {
  bool operator()(const Arrival& a, const Arrival& b) const {
    return a.time != b.time ? a.time > b.time : a.sequence > b.sequence;
  }
};

// devices.async_tick_s, or the median device's round time (1 s when devices take no time).
double TickSeconds(const Scenario& scenario, const SimulationInputs& inputs,
                   const MethodSpec& method, uint64_t seed, const fl::Coordinator& coordinator) {
  if (scenario.config.devices().async_tick_s() > 0) return scenario.config.devices().async_tick_s();
  int64_t module_bytes = 0;
  for (const fl::ModuleSnapshot& module : coordinator.Modules()) {
    module_bytes += module.values->num_values() * 4;
  }
  const int64_t samples =
      static_cast<int64_t>(method.recipe.local_steps) * method.recipe.batch_size;
  std::vector<double> seconds;
  for (int n = 0; n < scenario.num_clients(); ++n) {
    seconds.push_back(inputs.profiles.For(n).RoundSeconds(samples, module_bytes, module_bytes) *
                      DeviceSlowdown(scenario, seed, n));
  }
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  const double median = seconds[seconds.size() / 2];
  return median > 0 ? median : 1.0;
}

}  // namespace

absl::Status RunAsynchronous(const Scenario& scenario, const SimulationInputs& inputs,
                             const MethodSpec& method, uint64_t seed, RunWorld& world,
                             RunResult& result, RunObserver* observer) {
  const v1::SimScenario& config = scenario.config;
  fl::Coordinator& coordinator = *world.coordinator;
  HoldingPort holding(*world.port);
  world.weights_against_pattern = false;
  const double tick = TickSeconds(scenario, inputs, method, seed, coordinator);
  // A run whose devices are never available would tick forever: after this many ticks without
  // an update in flight or a buffer closed, it stops with an error. One whose updates are all
  // refused (training diverged: RunResult::failed_trainings) stops after kMaxStalledTicks
  // without a buffer closing, evaluated where it stalled and marked so.
  constexpr int64_t kMaxIdleTicks = 1'000'000;
  constexpr int64_t kMaxStalledTicks = 10'000;
  int64_t stalled_ticks = 0;
  std::priority_queue<Arrival, std::vector<Arrival>, ArrivesLater> arrivals;
  std::vector<double> busy_until(static_cast<size_t>(scenario.num_clients()), -1.0);
  int64_t sequence = 0, idle_ticks = 0;

  // Delivers one arrival; after a buffer closes, the round's totals and any evaluation.
  auto deliver = [&](Arrival arrival) -> absl::Status {
    world.now_s = arrival.time;
    world.clock.Set(absl::UnixEpoch() + absl::Seconds(world.now_s));
    world.bytes_up += arrival.bytes_up;
    const int64_t version = coordinator.current_round();
    absl::StatusOr<fl::SubmitResult> submitted =
        world.port->SubmitUpdate(arrival.client, arrival.held.round, arrival.held.update, 0);
    if (submitted.ok()) {
      const size_t staleness = static_cast<size_t>(version - arrival.held.round);
      if (result.staleness_histogram.size() <= staleness) {
        result.staleness_histogram.resize(staleness + 1, 0);
      }
      ++result.staleness_histogram[staleness];
    } else if (submitted.status().code() == absl::StatusCode::kAborted) {
      ++result.refused_stale;  // beyond max_staleness
    } else if (absl::IsInvalidArgument(submitted.status())) {
      ++result.failed_trainings;  // values too large for the round's exact sum
    } else {
      return absl::Status(submitted.status().code(),
                          absl::StrCat("client ", arrival.client, " update of version ",
                                       arrival.held.round, ": ", submitted.status().message()));
    }
    const int64_t closed = coordinator.current_round();
    if (closed == version) return absl::OkStatus();
    world.TakeRoundReports(result);
    if (observer != nullptr) observer->OnRound(closed, world.last_participants);
    if (closed % config.eval_every() == 0 || closed == config.rounds()) {
      FEDCL_RETURN_IF_ERROR(world.Evaluate(inputs, closed, result, observer));
    }
    return absl::OkStatus();
  };

  for (int64_t step = 0; coordinator.current_round() < config.rounds(); ++step) {
    const double now = static_cast<double>(step) * tick;
    const int64_t closed_before = coordinator.current_round();
    while (!arrivals.empty() && arrivals.top().time <= now &&
           coordinator.current_round() < config.rounds()) {
      Arrival arrival = std::move(const_cast<Arrival&>(arrivals.top()));
      arrivals.pop();
      FEDCL_RETURN_IF_ERROR(deliver(std::move(arrival)));
    }
    if (coordinator.current_round() >= config.rounds()) break;
    world.now_s = now;
    world.clock.Set(absl::UnixEpoch() + absl::Seconds(now));
    world.process->Advance(step, now);
    std::vector<uint32_t> idle;
    for (uint32_t n : world.process->Participants(0, world.process->num_clients())) {
      if (busy_until[n] <= now) idle.push_back(n);
    }
    const int64_t version = coordinator.current_round();
    FEDCL_ASSIGN_OR_RETURN(
        RoundRunner::StartOutcome started,
        world.runner->Start(holding, idle, version, now, static_cast<uint64_t>(step)));
    result.dropouts += started.dropouts;
    result.failed_trainings += started.failed_trainings;
    world.bytes_down += started.bytes_down;
    for (const RoundRunner::Started& device : started.started) {
      std::optional<HoldingPort::Held> held = holding.Take(device.client);
      if (!held.has_value()) {
        return absl::InternalError(
            absl::StrCat("client ", device.client, " trained but submitted nothing"));
      }
      busy_until[device.client] = now + device.seconds;
      arrivals.push(
          {now + device.seconds, sequence++, device.client, device.bytes_up, *std::move(held)});
    }
    idle_ticks =
        (arrivals.empty() && coordinator.current_round() == closed_before) ? idle_ticks + 1 : 0;
    stalled_ticks = coordinator.current_round() == closed_before ? stalled_ticks + 1 : 0;
    if (stalled_ticks > kMaxStalledTicks && result.failed_trainings > 0) {
      result.stalled = true;
      return world.Evaluate(inputs, coordinator.current_round(), result, observer);
    }
    if (idle_ticks > kMaxIdleTicks) {
      return absl::FailedPreconditionError(absl::StrCat(
          "method '", method.label, "': no device became available in ", kMaxIdleTicks,
          " ticks of ", tick, " s; buffer ", coordinator.current_round(), " cannot close"));
    }
  }
  return absl::OkStatus();
}

}  // namespace fedcl::sim
