#include "sim/run/round_runner.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/device/device_session.h"
#include "core/device/recipe_round.h"
#include "tbb/parallel_for.h"

namespace fedcl::sim {
namespace {

constexpr uint64_t kDropoutStream = 0x53494d44524f504f;

}  // namespace

RoundRunner::RoundRunner(const Scenario& scenario, const SimulationInputs& inputs,
                         const ClientData& client_data, uint64_t seed, int threads,
                         device::ServerInfo server)
    : scenario_(scenario),
      inputs_(inputs),
      client_data_(client_data),
      residuals_(static_cast<size_t>(scenario.num_clients())),
      seed_(seed),
      server_(std::move(server)),
      arena_(threads > 0 ? threads : tbb::info::default_concurrency()) {}

absl::StatusOr<RoundOutcome> RoundRunner::Run(device::FederationPort& port,
                                              absl::Span<const uint32_t> participants,
                                              int64_t round, double now_s) {
  std::vector<Participant> results(participants.size());
  arena_.execute([&] {
    tbb::parallel_for(size_t{0}, participants.size(), [&](size_t i) {
      results[i] = RunOne(port, participants[i], round, now_s, static_cast<uint64_t>(round),
                          /*asynchronous=*/false);
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
      case Fate::kTrainingFailed:
        ++outcome.failed_trainings;
        break;
      case Fate::kNoData:
      case Fate::kRoundClosed:
        break;
    }
  }
  return outcome;
}

absl::StatusOr<RoundRunner::StartOutcome> RoundRunner::Start(
    device::FederationPort& port, absl::Span<const uint32_t> participants, int64_t round,
    double now_s, uint64_t draw) {
  std::vector<Participant> results(participants.size());
  arena_.execute([&] {
    tbb::parallel_for(size_t{0}, participants.size(), [&](size_t i) {
      results[i] = RunOne(port, participants[i], round, now_s, draw, /*asynchronous=*/true);
    });
  });
  StartOutcome outcome;
  for (size_t i = 0; i < results.size(); ++i) {
    const Participant& p = results[i];
    FEDCL_RETURN_IF_ERROR(p.status);
    outcome.bytes_down += p.bytes_down;
    if (p.fate == Fate::kDropout) ++outcome.dropouts;
    if (p.fate == Fate::kTrainingFailed) ++outcome.failed_trainings;
    if (p.fate != Fate::kCounted) continue;
    outcome.started.push_back({participants[i], p.seconds, p.bytes_down, p.bytes_up});
  }
  return outcome;
}

bool RoundRunner::TakesPart(const fl::WorkAssignment& work, uint32_t client, int64_t round,
                            double now_s, uint64_t draw, bool asynchronous,
                            absl::Span<const int> indices, Participant& out) const {
  if (work.round != round) {
    out.status = absl::InternalError(
        absl::StrCat("no work for this round (server is at round ", work.round, ")"));
    return false;
  }
  int64_t module_bytes = 0, upload_bytes = 0;
  for (const fl::ModuleInfo& info : work.modules) {
    module_bytes += info.num_values * 4;
    upload_bytes += fl::CompressedBytes(info.upload, info.num_values);
  }
  out.bytes_down = module_bytes;
  if (indices.empty()) {
    out.fate = Fate::kNoData;
    return false;
  }
  const v1::DeviceConfig& devices = scenario_.config.devices();
  const int64_t samples = static_cast<int64_t>(work.recipe.local_steps) * work.recipe.batch_size;
  out.seconds = inputs_.profiles.For(client).RoundSeconds(samples, module_bytes, upload_bytes) *
                DeviceSlowdown(scenario_, seed_, client);
  if (!asynchronous && devices.round_deadline_s() > 0 && out.seconds > devices.round_deadline_s()) {
    out.fate = Fate::kStraggler;
    return false;
  }
  bool drops = devices.dropout_probability() > 0 &&
               base::Rng::ForStream(seed_, {kDropoutStream, client, draw})
                   .Bernoulli(devices.dropout_probability());
  if (inputs_.trace && inputs_.trace->unit() == TraceUnit::kSeconds) {
    const AvailabilityTrace::Window* window = inputs_.trace->WindowAt(client, now_s);
    drops = drops || window == nullptr || window->until < now_s + out.seconds;
  }
  if (drops) {
    out.fate = Fate::kDropout;
    return false;
  }
  out.bytes_up = upload_bytes;
  return true;
}

RoundRunner::Participant RoundRunner::RunOne(device::FederationPort& port, uint32_t client,
                                             int64_t round, double now_s, uint64_t draw,
                                             bool asynchronous) {
  Participant out;
  auto fail = [&](const absl::Status& status) {
    out.status = absl::Status(
        status.code(), absl::StrCat("client ", client, " round ", round, ": ", status.message()));
    return out;
  };
  std::unique_ptr<Replica>& replica = replicas_.local();
  if (replica == nullptr) {
    absl::StatusOr<std::unique_ptr<nn::Model>> model = MakeModel(scenario_, inputs_, seed_);
    if (!model.ok()) return fail(model.status());
    replica = std::make_unique<Replica>();
    absl::StatusOr<std::unique_ptr<cl::Learner>> learner =
        cl::Learner::Create(std::move(*model), {.method = "recipe", .seed = seed_});
    if (!learner.ok()) return fail(learner.status());
    replica->learner = std::move(*learner);
  }
  // A virtual client keeps nothing between rounds: a fresh session, whose Begin re-bases every
  // module the round lists onto the server's values, and which drops what a closed round did not
  // take (as FedAvg's clients start each round from the server's model).
  device::DeviceSession session({.client_id = client,
                                 .software = "fedcl-sim",
                                 .unsent = device::SessionOptions::Unsent::kDrop},
                                *replica->learner, {.port = &port, .mu = &replica->mu});
  if (absl::Status joined = session.Joined({.client_id = client, .server = server_});
      !joined.ok()) {
    return fail(joined);
  }
  // Error feedback outlives the session: the client's residuals wait here between its rounds,
  // handed to the session once Begin has installed the round's modules (the recipe learner
  // adopts them at the download) and taken back when it ends. Each client runs on one thread at
  // a time, so its entry needs no lock.
  std::map<std::string, std::vector<float>>& residuals = residuals_[client];
  bool residuals_handed = false;
  absl::Cleanup keep_residuals = [&] {
    if (!residuals_handed) return;
    std::lock_guard<std::mutex> lock(replica->mu);
    residuals = session.ResidualsLocked();
  };
  absl::Span<const int> indices = client_data_.Indices(client, scratch_.local());
  absl::StatusOr<device::RoundWork> work = session.Begin([&](const fl::WorkAssignment& offered) {
    return TakesPart(offered, client, round, now_s, draw, asynchronous, indices, out);
  });
  if (!work.ok()) return fail(work.status());
  if (!out.status.ok()) return fail(out.status);
  if (!work->train) {
    if (asynchronous && work->server_round == round) {
      out.fate = Fate::kAlreadyCounted;  // its update is in the open buffer: it waits for the next
      return out;
    }
    if (work->server_round == round) {
      // The coordinator already holds this client's update for the round: a worker restarted
      // mid-round (Kubernetes restarts a failed shard) finds the updates it sent before dying.
      // The update counts once; nothing is trained or sent again.
      out.fate = Fate::kAlreadyCounted;
      return out;
    }
    if (work->server_round > round) {
      out.fate = Fate::kRoundClosed;  // it closed while a restarted worker caught up
      return out;
    }
    return fail(absl::InternalError(
        absl::StrCat("no work for this round (server is at round ", work->server_round, ")")));
  }
  if (work->declined) return out;  // a straggler, a dropout or a client without data
  {
    std::lock_guard<std::mutex> lock(replica->mu);
    session.SetResidualsLocked(residuals);
    residuals_handed = true;
  }
  if (absl::Status trained = device::TrainRecipeRound(*replica->learner, session, replica->mu,
                                                      work->recipe, inputs_.train, indices,
                                                      {seed_, client, static_cast<int64_t>(draw)});
      !trained.ok()) {
    if (!absl::IsFailedPrecondition(trained)) return fail(trained);
    out.fate = Fate::kTrainingFailed;  // diverged: the session discarded the learning
    out.bytes_up = 0;
    return out;
  }
  absl::StatusOr<device::SubmitOutcome> submitted = session.Submit(round);
  if (absl::IsInvalidArgument(submitted.status())) {
    out.fate = Fate::kTrainingFailed;  // values the server cannot sum: diverged in all but name
    out.bytes_up = 0;
    return out;
  }
  if (!submitted.ok()) return fail(submitted.status());
  if (submitted->kind == device::SubmitOutcome::Kind::kNothingToSubmit) {
    out.fate = Fate::kTrainingFailed;  // the training moved nothing
    out.bytes_up = 0;
    return out;
  }
  if (submitted->kind != device::SubmitOutcome::Kind::kAccepted &&
      submitted->kind != device::SubmitOutcome::Kind::kDuplicate) {
    return fail(absl::InternalError(absl::StrCat("the server did not take the update (outcome ",
                                                 static_cast<int>(submitted->kind), ")")));
  }
  out.bytes_up = submitted->bytes_uploaded;  // what was sent (a top-k payload's size is known now)
  return out;
}

}  // namespace fedcl::sim
