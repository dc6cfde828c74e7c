// One round of a recipe device (algorithms.md §1.4): the round's minibatches drawn from the
// device's samples by a stream keyed by (seed, client, round), a fresh optimizer with the
// server's recipe (cl::Learner::BeginRound, the "recipe" method), the recipe's steps, and the
// learning committed to the device session — what fedcl-client's recipe devices and the
// federated simulator's devices do between DeviceSession::Begin and Submit.
//
//   FEDCL_ASSIGN_OR_RETURN(device::RoundWork work, session.Begin());
//   FEDCL_RETURN_IF_ERROR(device::TrainRecipeRound(learner, session, mu, work.recipe, data,
//                                                  indices, {seed, client, work.round}));
//   FEDCL_ASSIGN_OR_RETURN(device::SubmitOutcome out, session.Submit(work.round));
//
// A client's update depends only on (seed, client, round) and the modules it downloaded, not on
// how clients are scheduled, sharded across processes or threaded.
#ifndef FEDCL_CORE_DEVICE_RECIPE_ROUND_H_
#define FEDCL_CORE_DEVICE_RECIPE_ROUND_H_

#include <cstdint>
#include <mutex>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/cl/learner.h"
#include "core/data/dataset.h"
#include "core/device/device_session.h"
#include "core/fl/round_types.h"

namespace fedcl::device {

struct TrainingStream {
  uint64_t seed = 0;
  fl::ClientId client = 0;
  int64_t round = 0;
};

// Trains `recipe.local_steps` minibatches of `recipe.batch_size` samples of `data` restricted to
// `indices` (all of `data` if empty) — the samples shuffled by the stream, taken in order,
// cyclically — and commits the learning to `session`, taking `mu` (the session's mutex) around
// the whole round. InvalidArgument for no data or a bad recipe; FailedPrecondition if the loss
// diverges (not finite), after which the round's learning is discarded (the modules are back to
// the values they had).
absl::Status TrainRecipeRound(cl::Learner& learner, DeviceSession& session, std::mutex& mu,
                              const nn::Recipe& recipe, const data::Dataset& data,
                              absl::Span<const int> indices, const TrainingStream& stream);

}  // namespace fedcl::device

#endif  // FEDCL_CORE_DEVICE_RECIPE_ROUND_H_
