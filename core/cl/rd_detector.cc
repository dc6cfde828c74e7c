#include "core/cl/rd_detector.h"

#include <numeric>

#include "absl/strings/str_cat.h"

namespace fedcl::cl {

absl::Status RdDetector::Fit(const ood::OodBatch& batch, absl::Span<const int32_t>) {
  if (batch.layers.empty() || batch.layers[0] == nullptr || batch.layers[0]->rows() == 0) {
    return absl::InvalidArgumentError("rd_zscore needs the block-input features (layers[0])");
  }
  const nn::Matrix& z = *batch.layers[0];
  if (!z.allFinite()) return absl::InvalidArgumentError("rd_zscore: features are not finite");
  base::Rng rng = base::Rng::ForStream(options_.seed, {0x5244});
  absl::StatusOr<RepresentationDescriptor> rd =
      RepresentationDescriptor::Create(static_cast<int>(z.cols()), options_.bottleneck, rng);
  if (!rd.ok()) return rd.status();
  descriptor_ = std::move(*rd);
  records_ = LossRecords();
  std::vector<int> order(z.rows());
  std::iota(order.begin(), order.end(), 0);
  nn::Matrix minibatch;
  for (int epoch = 0; epoch < options_.epochs; ++epoch) {
    rng.Shuffle(order);
    for (size_t start = 0; start < order.size(); start += options_.batch_size) {
      const size_t rows = std::min<size_t>(options_.batch_size, order.size() - start);
      minibatch.resize(static_cast<int64_t>(rows), z.cols());
      for (size_t i = 0; i < rows; ++i)
        minibatch.row(static_cast<int64_t>(i)) = z.row(order[start + i]);
      records_.Add(descriptor_->Losses(minibatch));  // training-mode forwards fill the records
      descriptor_->TrainStep(minibatch, options_.learning_rate);
    }
  }
  records_.Freeze();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> RdDetector::Score(const ood::OodBatch& batch) const {
  if (!descriptor_.has_value()) return absl::FailedPreconditionError("rd_zscore: not fitted");
  if (batch.layers.empty() || batch.layers[0] == nullptr) {
    return absl::InvalidArgumentError("rd_zscore needs the block-input features (layers[0])");
  }
  const nn::Matrix& z = *batch.layers[0];
  if (z.cols() != descriptor_->dim()) {
    return absl::InvalidArgumentError(absl::StrCat("rd_zscore: features have ", z.cols(),
                                                   " dimensions, fitted on ", descriptor_->dim()));
  }
  std::vector<float> scores;
  for (float loss : descriptor_->Losses(z))
    scores.push_back(static_cast<float>(records_.ZScore(loss)));
  return scores;
}

}  // namespace fedcl::cl
