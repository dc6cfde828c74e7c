#include "core/data/batching.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"

namespace fedcl::data {
namespace {

absl::Status CheckArguments(int num_samples, int batch_size, bool drop_last) {
  if (num_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_samples is negative: ", num_samples));
  }
  if (batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be positive, got ", batch_size));
  }
  if (drop_last && num_samples > 0 && num_samples < batch_size) {
    return absl::InvalidArgumentError(absl::StrCat("drop_last with ", num_samples,
                                                   " samples and batch_size ", batch_size,
                                                   " leaves no batch"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BatchSampler> BatchSampler::Create(int num_samples, int batch_size, uint64_t seed,
                                                  bool shuffle, bool drop_last) {
  FEDCL_RETURN_IF_ERROR(CheckArguments(num_samples, batch_size, drop_last));
  return BatchSampler(num_samples, batch_size, seed, shuffle, drop_last);
}

BatchSampler::BatchSampler(int num_samples, int batch_size, uint64_t seed, bool shuffle,
                           bool drop_last)
    : batch_size_(batch_size), seed_(seed), shuffle_(shuffle), drop_last_(drop_last) {
  absl::Status status = CheckArguments(num_samples, batch_size, drop_last);
  FEDCL_CHECK(status.ok()) << status.message();
  order_.resize(num_samples);
  StartEpoch(0);
}

void BatchSampler::StartEpoch(int epoch) {
  FEDCL_CHECK(epoch >= 0) << "epoch " << epoch;
  epoch_ = epoch;
  position_ = 0;
  std::iota(order_.begin(), order_.end(), 0);
  if (shuffle_) {
    base::Rng rng = base::Rng::ForStream(seed_, {static_cast<uint64_t>(epoch)});
    rng.Shuffle(order_);
  }
}

int BatchSampler::batches_per_epoch() const {
  const int n = num_samples();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

bool BatchSampler::Next(std::vector<int>* indices) {
  const int remaining = num_samples() - position_;
  if (remaining == 0 || (drop_last_ && remaining < batch_size_)) {
    indices->clear();
    if (num_samples() > 0) StartEpoch(epoch_ + 1);
    return false;
  }
  const int take = std::min(batch_size_, remaining);
  indices->assign(order_.begin() + position_, order_.begin() + position_ + take);
  position_ += take;
  return true;
}

void BatchSampler::NextWrapping(std::vector<int>* indices) {
  // Create guarantees at least one batch per epoch, so the second call cannot fail too.
  if (!Next(indices)) Next(indices);
}

}  // namespace fedcl::data
