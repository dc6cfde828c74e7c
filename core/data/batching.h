// Deterministic shuffling and batching of sample indices.
//
// A BatchSampler walks over [0, num_samples) in batches, one epoch after another. With shuffling,
// epoch e visits the samples in the order of a Fisher-Yates shuffle drawn from
// base::Rng::ForStream(seed, {e}), so the seed fixes the order of every epoch, and a run resumed
// at epoch e (StartEpoch) sees exactly the batches it would have seen:
//
//   FEDCL_ASSIGN_OR_RETURN(data::BatchSampler sampler,
//                          data::BatchSampler::Create(train.size(), 64, seed, true, false));
//   std::vector<int> batch;
//   while (sampler.Next(&batch)) { ... }       // one epoch; the next loop runs epoch 1
//   for (int step = 0; step < steps; ++step) {
//     sampler.NextWrapping(&batch);            // never ends: crosses epochs as needed
//   }
//
// The index buffers are reused: after the first epoch nothing is allocated. Not thread-safe; give
// each client or thread its own sampler (they are cheap: one int per sample).
#ifndef FEDCL_CORE_DATA_BATCHING_H_
#define FEDCL_CORE_DATA_BATCHING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedcl::data {

class BatchSampler {
 public:
  // Validates the arguments: InvalidArgument if num_samples < 0 or batch_size <= 0, or if
  // drop_last leaves no batch at all (0 < num_samples < batch_size), naming the values.
  static absl::StatusOr<BatchSampler> Create(int num_samples, int batch_size, uint64_t seed,
                                             bool shuffle, bool drop_last);

  // As Create, for arguments already known to be valid; invalid ones abort (FEDCL_CHECK).
  // `shuffle` false visits samples in order every epoch. `drop_last` drops the final batch of an
  // epoch when it would be smaller than batch_size.
  BatchSampler(int num_samples, int batch_size, uint64_t seed, bool shuffle, bool drop_last);

  // Fills `indices` with the next batch of the current epoch and returns true; at the end of the
  // epoch clears `indices`, moves to the next epoch and returns false (once). With zero samples
  // it always returns false.
  bool Next(std::vector<int>* indices);

  // The next batch, starting the next epoch when the current one is exhausted. Never empty; with
  // zero samples `indices` is left empty.
  void NextWrapping(std::vector<int>* indices);

  // Restarts at the beginning of epoch `epoch` (>= 0), e.g. to resume from a checkpoint.
  void StartEpoch(int epoch);

  // The epoch the next batch comes from (0 first).
  int epoch() const { return epoch_; }
  // Batches in every epoch.
  int batches_per_epoch() const;
  int num_samples() const { return static_cast<int>(order_.size()); }
  int batch_size() const { return batch_size_; }

 private:
  std::vector<int> order_;  // this epoch's visiting order
  int batch_size_;
  uint64_t seed_;
  bool shuffle_;
  bool drop_last_;
  int epoch_ = 0;
  int position_ = 0;  // next index into order_
};

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_BATCHING_H_
