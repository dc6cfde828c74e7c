// client::Device: one cycle — learning from the stream (continual methods), the session's work,
// a recipe round, and the submission (the contract is in device.h).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/device.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "core/device/recipe_round.h"

namespace fedcl::client {

absl::Status Device::Cycle() {
  if (!options_.recipe()) FEDCL_RETURN_IF_ERROR(LearnStream(options_.batches_per_sync));
  // Recipe devices draw whether they take part before anything is downloaded.
  const auto take_part = [this](const fl::WorkAssignment& work) { return Draw(work); };
  absl::StatusOr<device::RoundWork> work =
      options_.recipe() ? Retry("asking for work", [&] { return session_->Begin(take_part); })
                        : session_->Begin();
  if (!work.ok() && !options_.recipe() && device::IsTransient(work.status())) {
    // A continual device learns on offline and tries again after a growing delay.
    const absl::Duration delay = backoff_.Next();
    Count([](DeviceStats& s) { ++s.retries; });
    Log(base::LogLevel::kInfo, absl::StrCat("the server cannot be reached (",
                                            work.status().message(), "); learning offline"));
    Sleep(std::min(delay, options_.max_poll));
    return absl::OkStatus();
  }
  FEDCL_RETURN_IF_ERROR(work.status());
  backoff_.Reset();
  Count([&](DeviceStats& s) { s.modules_downloaded += work->modules_downloaded; });
  // A submission whose reply was lost, answered now: it counts for its own round.
  if (work->resolved != nullptr) {
    CountOutcome(*work->resolved);
    if (Finished()) return absl::OkStatus();
  }
  if (!work->train) {
    Sleep(ClampPoll(work->retry_after));
    return absl::OkStatus();
  }
  if (work->declined) {
    Sleep(ClampPoll(work->deadline - clock_.Now() + options_.min_poll));
    return absl::OkStatus();
  }
  if (options_.recipe()) return RecipeRound(*work);
  // A continual device counts the round once it synced in it while it was open, whether it had
  // learning to send or not (SimpleCIL never has).
  if (work->round != last_synced_round_) {
    last_synced_round_ = work->round;
    Count([](DeviceStats& s) { ++s.rounds; });
  }
  bool submitted = false;
  FEDCL_RETURN_IF_ERROR(SubmitRound(work->round, &submitted));
  if (!submitted) Sleep(options_.max_poll);  // the next round, or the server's next version
  return absl::OkStatus();
}

bool Device::Draw(const fl::WorkAssignment& work) {
  const int64_t round = work.round;
  if (round != draw_round_ || work.deadline > draw_deadline_) {
    // A new round, or the same one extended: a new draw.
    draw_extensions_ = round == draw_round_ ? draw_extensions_ + 1 : 0;
    draw_round_ = round;
    draw_deadline_ = work.deadline;
    draw_logged_ = false;
  }
  if (Participates(round, draw_extensions_)) return true;
  if (!draw_logged_) {
    draw_logged_ = true;
    Log(base::LogLevel::kInfo,
        absl::StrCat("round ", round, draw_extensions_ > 0 ? " (extended)" : "",
                     ": not taking part (p = ", options_.participation_probability, ")"));
    Count([](DeviceStats& s) { ++s.rounds_skipped; });
  }
  return false;
}

absl::Status Device::RecipeRound(const device::RoundWork& work) {
  const int64_t round = work.round;
  if (work.modules.empty()) return absl::InvalidArgumentError("the server assigned no modules");
  if (SubmittedRound() >= round) {
    // Its update for this round is the server's already (acknowledged, or a lost reply resolved
    // by Begin): wait for the next round rather than train it again.
    Sleep(ClampPoll(work.deadline - clock_.Now() + options_.min_poll));
    return absl::OkStatus();
  }
  if (refused_.has_value()) {
    // A submission was refused with FAILED_PRECONDITION. If no module needed fetching, it was
    // not a stale version: stop rather than train and be refused again.
    if (work.modules_downloaded == 0) return *refused_;
    refused_.reset();
  }
  const absl::Status trained =
      device::TrainRecipeRound(*learner_, *session_, session_mu_, work.recipe, data_, {},
                               {options_.seed, options_.client_id, round});
  if (absl::IsFailedPrecondition(trained)) {
    Log(base::LogLevel::kWarning,
        absl::StrCat("round ", round, ": leaving the round: ", trained.message()));
    Count([](DeviceStats& s) { ++s.training_failures; });
    Sleep(ClampPoll(work.deadline - clock_.Now() + options_.min_poll));
    return absl::OkStatus();
  }
  FEDCL_RETURN_IF_ERROR(trained);
  Count([](DeviceStats& s) { ++s.rounds_trained; });
  if (options_.throttle_per_sample > absl::ZeroDuration()) {
    Sleep(options_.throttle_per_sample *
          (static_cast<int64_t>(work.recipe.local_steps) * work.recipe.batch_size));
  }
  return SubmitRound(round, nullptr);
}

absl::Status Device::SubmitRound(int64_t round, bool* submitted) {
  absl::StatusOr<device::SubmitOutcome> out =
      Retry(absl::StrCat("submitting the update of round ", round),
            [&] { return session_->Submit(round); });
  if (absl::IsInvalidArgument(out.status())) {
    Count([](DeviceStats& s) { ++s.updates_dropped; });
    return internal::WithContext(out.status(),
                                 absl::StrCat("the update of round ", round, " was refused"));
  }
  FEDCL_RETURN_IF_ERROR(out.status());
  using Kind = device::SubmitOutcome::Kind;
  CountOutcome(*out);
  if (out->kind == Kind::kAccepted || out->kind == Kind::kDuplicate) {
    if (submitted != nullptr) *submitted = true;
  } else if (out->kind == Kind::kStale) {
    Log(base::LogLevel::kWarning,
        absl::StrCat("round ", round, ": a module moved on; fetching modules again"));
    refused_ = absl::FailedPreconditionError(
        absl::StrCat("the server refused the update of round ", round,
                     " as trained from a stale module, but no module had moved on"));
  }
  return absl::OkStatus();
}

void Device::CountOutcome(const device::SubmitOutcome& out) {
  using Kind = device::SubmitOutcome::Kind;
  switch (out.kind) {
    case Kind::kAccepted:
    case Kind::kDuplicate:
      Log(base::LogLevel::kInfo,
          absl::StrFormat("round %d: %d samples, loss %.4f, weight %.4f, duplicate %s", out.round,
                          out.samples, out.loss, out.weight,
                          out.kind == Kind::kDuplicate ? "yes" : "no"));
      Count([&](DeviceStats& s) {
        ++s.participations;
        s.duplicates += out.kind == Kind::kDuplicate ? 1 : 0;
        s.rounds += options_.recipe() ? 1 : 0;
        s.last_round = out.round;
        s.last_loss = out.loss;
      });
      return;
    case Kind::kRoundClosed:
    case Kind::kStale:
      Count([](DeviceStats& s) { s.updates_dropped += 1; });
      return;
    case Kind::kNothingToSubmit:
    case Kind::kAlreadySubmitted:
      return;
  }
}

absl::Status Device::LearnStream(int batches) {
  const int n = std::min(options_.batch_size, data_.size());
  const int64_t per_image = data_.sample_dim();
  nn::Matrix images(n, per_image);
  std::vector<int32_t> labels(n);
  for (int b = 0; b < batches && !ShouldHalt(); ++b) {
    const bool shifted = options_.shift_after >= 0 && stats().batches >= options_.shift_after;
    for (int i = 0; i < n; ++i) {
      if (next_ == order_.size()) {  // a new pass over the partition, in a new order
        order_.resize(data_.size());
        std::iota(order_.begin(), order_.end(), 0);
        base::Rng rng = base::Rng::ForStream(options_.seed, {options_.client_id, pass_++});
        for (size_t j = order_.size() - 1; j > 0; --j)
          std::swap(order_[j], order_[rng.UniformInt(j + 1)]);
        next_ = 0;
      }
      const int sample = order_[next_++];
      for (int64_t k = 0; k < per_image; ++k) {
        // Pixels in [0, 1], inverted after the shift, then standardised as the SDK does.
        const float v = shifted ? 1.0f - data_.images(sample, k) : data_.images(sample, k);
        images(i, k) = (v - data::kFashionMnistMean) / data::kFashionMnistStddev;
      }
      labels[i] = data_.labels[sample];
    }
    std::lock_guard<std::mutex> lock(session_mu_);
    // Scored before it is learned: prequential accuracy. (A method that cannot predict yet —
    // SimpleCIL before its first class — scores nothing.)
    absl::StatusOr<std::vector<cl::Prediction>> predictions = learner_->Predict(images);
    if (!predictions.ok() && !absl::IsFailedPrecondition(predictions.status())) {
      return predictions.status();
    }
    int64_t correct = 0, scored = 0;
    if (predictions.ok()) {
      scored = n;
      for (int i = 0; i < n; ++i) correct += (*predictions)[i].label == labels[i] ? 1 : 0;
    }
    FEDCL_ASSIGN_OR_RETURN(cl::LearnStats stats, learner_->Learn(images, labels));
    session_->AfterLearnLocked(n, stats.loss);
    if (!std::isfinite(stats.loss)) {
      session_->DiscardUncommittedLocked();  // a diverged step would poison every later one
      Count([](DeviceStats& s) { ++s.training_failures; });
      continue;
    }
    Count([&](DeviceStats& s) {
      ++s.batches;
      s.scored += scored;
      s.correct += correct;
    });
  }
  std::lock_guard<std::mutex> lock(session_mu_);
  return session_->CommitLocked();
}

}  // namespace fedcl::client
