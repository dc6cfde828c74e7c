#include "core/device/recipe_round.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"

namespace fedcl::device {

absl::Status TrainRecipeRound(cl::Learner& learner, DeviceSession& session, std::mutex& mu,
                              const nn::Recipe& recipe, const data::Dataset& data,
                              absl::Span<const int> indices, const TrainingStream& stream) {
  FEDCL_RETURN_IF_ERROR(recipe.Validate());
  std::vector<int> samples(indices.begin(), indices.end());
  if (samples.empty()) {
    samples.resize(data.size());
    std::iota(samples.begin(), samples.end(), 0);
  }
  if (samples.empty()) return absl::InvalidArgumentError("no local data to train on");
  base::Rng rng =
      base::Rng::ForStream(stream.seed, {stream.client, static_cast<uint64_t>(stream.round)});
  rng.Shuffle(samples);
  std::lock_guard<std::mutex> lock(mu);
  FEDCL_RETURN_IF_ERROR(learner.BeginRound(recipe));
  nn::Matrix images;
  std::vector<int32_t> labels;
  std::vector<int> batch(recipe.batch_size);
  size_t cursor = 0;
  for (int step = 0; step < recipe.local_steps; ++step) {
    for (int& index : batch) {
      index = samples[cursor];
      cursor = (cursor + 1) % samples.size();
    }
    FEDCL_RETURN_IF_ERROR(data::GatherBatch(data, batch, &images, &labels));
    FEDCL_ASSIGN_OR_RETURN(cl::LearnStats stats, learner.Learn(images, labels));
    session.AfterLearnLocked(recipe.batch_size, stats.loss);
    if (!std::isfinite(stats.loss)) {
      session.DiscardUncommittedLocked();
      return absl::FailedPreconditionError(
          absl::StrCat("local training diverged at step ", step + 1, " (loss ", stats.loss, ")"));
    }
  }
  return session.CommitLocked();
}

}  // namespace fedcl::device
