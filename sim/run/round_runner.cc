#include "sim/run/round_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "tbb/parallel_for.h"

namespace fedcl::sim {
namespace {

constexpr uint64_t kDropoutStream = 0x53494d44524f504f;

}  // namespace

absl::StatusOr<fl::WorkAssignment> InProcessEndpoint::GetWork(fl::ClientId client) {
  return coordinator_.GetWork(client, {});
}

absl::StatusOr<fl::ModuleSnapshot> InProcessEndpoint::GetModule(fl::ClientId,
                                                                const fl::ModuleInfo& info) {
  return coordinator_.GetModule(info.spec.name, info.version);
}

absl::Status InProcessEndpoint::Submit(fl::ClientId client, int64_t round,
                                       fl::LocalUpdate& update) {
  return coordinator_.Submit(fl::ToSubmission(update, client, round)).status();
}

RoundRunner::RoundRunner(const Scenario& scenario, const SimulationInputs& inputs,
                         const ClientData& client_data, uint64_t seed, int threads)
    : scenario_(scenario),
      inputs_(inputs),
      client_data_(client_data),
      seed_(seed),
      arena_(threads > 0 ? threads : tbb::info::default_concurrency()) {}

absl::StatusOr<RoundOutcome> RoundRunner::Run(CoordinatorEndpoint& endpoint,
                                              absl::Span<const uint32_t> participants,
                                              int64_t round, double now_s) {
  std::vector<Participant> results(participants.size());
  arena_.execute([&] {
    tbb::parallel_for(size_t{0}, participants.size(), [&](size_t i) {
      results[i] = RunOne(endpoint, participants[i], round, now_s);
    });
  });
  RoundOutcome outcome;
  const double deadline = scenario_.config.devices().round_deadline_s();
  for (const Participant& p : results) {
    FEDCL_RETURN_IF_ERROR(p.status);
    outcome.bytes_down += p.bytes_down;
    outcome.bytes_up += p.bytes_up;
    switch (p.fate) {
      case Fate::kCounted:
        ++outcome.counted;
        outcome.seconds = std::max(outcome.seconds, p.seconds);
        break;
      case Fate::kStraggler:
        ++outcome.stragglers;
        outcome.seconds = std::max(outcome.seconds, deadline);
        break;
      case Fate::kDropout:
        ++outcome.dropouts;
        break;
      case Fate::kAlreadyCounted:
        ++outcome.counted;
        break;
      case Fate::kNoData:
      case Fate::kRoundClosed:
        break;
    }
  }
  return outcome;
}

RoundRunner::Participant RoundRunner::RunOne(CoordinatorEndpoint& endpoint, uint32_t client,
                                             int64_t round, double now_s) {
  Participant out;
  auto fail = [&](const absl::Status& status) {
    out.status = absl::Status(
        status.code(), absl::StrCat("client ", client, " round ", round, ": ", status.message()));
    return out;
  };
  absl::StatusOr<fl::WorkAssignment> work = endpoint.GetWork(client);
  if (!work.ok()) return fail(work.status());
  if (work->action == fl::WorkAssignment::Action::kWait && work->round == round) {
    // The coordinator already holds this client's update for the round: a worker restarted
    // mid-round (Kubernetes restarts a failed shard) finds the updates it sent before dying. The
    // update counts once; nothing is trained or sent again.
    out.fate = Fate::kAlreadyCounted;
    out.bytes_down = 0;
    return out;
  }
  if (work->round > round) {
    // The round closed while a restarted worker caught up: nothing to do for it any more.
    out.fate = Fate::kRoundClosed;
    out.bytes_down = 0;
    return out;
  }
  if (work->action != fl::WorkAssignment::Action::kTrain || work->round != round) {
    return fail(absl::InternalError(
        absl::StrCat("no work for this round (server is at round ", work->round, ")")));
  }
  int64_t module_bytes = 0;
  for (const fl::ModuleInfo& info : work->modules) module_bytes += info.num_values * 4;
  out.bytes_down = module_bytes;
  absl::Span<const int> indices = client_data_.Indices(client, scratch_.local());
  if (indices.empty()) {
    out.fate = Fate::kNoData;
    return out;
  }
  const v1::DeviceConfig& devices = scenario_.config.devices();
  const int64_t samples = static_cast<int64_t>(work->recipe.local_steps) * work->recipe.batch_size;
  out.seconds = inputs_.profiles.For(client).RoundSeconds(samples, module_bytes, module_bytes);
  if (devices.round_deadline_s() > 0 && out.seconds > devices.round_deadline_s()) {
    out.fate = Fate::kStraggler;
    return out;
  }
  bool drops = devices.dropout_probability() > 0 &&
               base::Rng::ForStream(seed_, {kDropoutStream, client, static_cast<uint64_t>(round)})
                   .Bernoulli(devices.dropout_probability());
  if (inputs_.trace && inputs_.trace->unit() == TraceUnit::kSeconds) {
    const AvailabilityTrace::Window* window = inputs_.trace->WindowAt(client, now_s);
    drops = drops || window == nullptr || window->until < now_s + out.seconds;
  }
  if (drops) {
    out.fate = Fate::kDropout;
    return out;
  }
  std::unique_ptr<fl::ClientModel>& replica = replicas_.local();
  if (replica == nullptr) {
    absl::StatusOr<std::unique_ptr<nn::Model>> model = MakeModel(scenario_, inputs_, seed_);
    if (!model.ok()) return fail(model.status());
    replica = std::make_unique<fl::ClientModel>(std::move(*model));
  }
  std::vector<std::string> names;
  for (const fl::ModuleInfo& info : work->modules) {
    absl::StatusOr<fl::ModuleSnapshot> module = endpoint.GetModule(client, info);
    if (!module.ok()) return fail(module.status());
    if (absl::Status installed = replica->Install(module->spec, module->version, *module->values);
        !installed.ok()) {
      return fail(installed);
    }
    names.push_back(info.spec.name);
  }
  absl::StatusOr<fl::LocalUpdate> update =
      fl::TrainLocally(*replica, names, work->recipe, inputs_.train, indices,
                       {.seed = seed_, .client = client, .round = round});
  if (!update.ok()) return fail(update.status());
  out.bytes_up = module_bytes;
  if (absl::Status submitted = endpoint.Submit(client, round, *update); !submitted.ok()) {
    return fail(submitted);
  }
  return out;
}

}  // namespace fedcl::sim
