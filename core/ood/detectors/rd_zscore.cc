// rd_zscore (algorithms.md §4.2-4.3): SEMA's representation descriptor as an OOD detector. A
// descriptor is trained on the in-distribution token means of the last block's input, its loss
// records fill during training, and a sample's score is its z-score |ℓ(x) − μ| / σ against them.
// Options: `bottleneck` (16, below the token-mean width), `epochs` (20), `batch_size` (32),
// `learning_rate` (0.05); the initial weights and the shuffles come from the context's seed.
#include <memory>
#include <numeric>
#include <optional>

#include "core/base/status_macros.h"
#include "core/ood/detector_support.h"
#include "core/ood/representation_descriptor.h"

namespace fedcl::ood {
namespace {

struct RdOptions {
  int bottleneck = 16;
  int epochs = 20;
  int batch_size = 32;
  float learning_rate = 0.05f;
  uint64_t seed = 1;
};

class RdDetector final : public OodDetector {
 public:
  static absl::StatusOr<std::unique_ptr<OodDetector>> Create(const DetectorContext& context);
  explicit RdDetector(const RdOptions& options) : options_(options) {}
  absl::string_view name() const override { return "rd_zscore"; }
  // Trains the descriptor on the token means (labels unused), shuffled each epoch.
  absl::Status Fit(const OodBatch& batch, absl::Span<const int32_t> labels) override;
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;

 private:
  RdOptions options_;
  std::optional<RepresentationDescriptor> descriptor_;
  LossRecords records_;
};

absl::StatusOr<std::unique_ptr<OodDetector>> RdDetector::Create(const DetectorContext& context) {
  FEDCL_ASSIGN_OR_RETURN(base::OptionText text, ParseOptions(context, "rd_zscore"));
  RdOptions o{.seed = context.seed};
  FEDCL_RETURN_IF_ERROR(text.Read("bottleneck", &o.bottleneck));
  FEDCL_RETURN_IF_ERROR(text.Read("epochs", &o.epochs));
  FEDCL_RETURN_IF_ERROR(text.Read("batch_size", &o.batch_size));
  FEDCL_RETURN_IF_ERROR(text.Read("learning_rate", &o.learning_rate));
  FEDCL_RETURN_IF_ERROR(
      FinishOptions(text, "rd_zscore", "bottleneck, epochs, batch_size, learning_rate"));
  for (auto [key, value] : {std::pair<const char*, int>{"bottleneck", o.bottleneck},
                            {"epochs", o.epochs},
                            {"batch_size", o.batch_size}}) {
    if (value < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("detector rd_zscore options: '", key, "' must be >= 1, got ", value));
    }
  }
  if (!(o.learning_rate > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "detector rd_zscore options: 'learning_rate' must be positive, got ", o.learning_rate));
  }
  return std::make_unique<RdDetector>(o);
}

absl::Status RdDetector::Fit(const OodBatch& batch, absl::Span<const int32_t>) {
  FEDCL_RETURN_IF_ERROR(NeedMatrix(batch.token_mean, "token means", name()));
  const nn::Matrix& z = *batch.token_mean;
  if (options_.bottleneck >= z.cols()) {
    return absl::InvalidArgumentError(absl::StrCat("rd_zscore: 'bottleneck' (", options_.bottleneck,
                                                   ") must be below the width of the token means (",
                                                   z.cols(), ")"));
  }
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

absl::StatusOr<std::vector<float>> RdDetector::Score(const OodBatch& batch) const {
  if (!descriptor_.has_value()) return absl::FailedPreconditionError("rd_zscore: not fitted");
  if (batch.token_mean == nullptr) {
    return absl::InvalidArgumentError("rd_zscore needs the batch's token means");
  }
  const nn::Matrix& z = *batch.token_mean;
  if (z.cols() != descriptor_->dim()) {
    return absl::InvalidArgumentError(absl::StrCat("rd_zscore: token means have ", z.cols(),
                                                   " dimensions, fitted on ", descriptor_->dim()));
  }
  std::vector<float> scores;
  for (float loss : descriptor_->Losses(z))
    scores.push_back(static_cast<float>(records_.ZScore(loss)));
  return scores;
}

}  // namespace

FEDCL_REGISTER_OOD_DETECTOR(rd_zscore,
                            {.description = "z-score of a representation descriptor's "
                                            "reconstruction loss on the token means (SEMA)",
                             .needs = {.token_mean = true},
                             .create = &RdDetector::Create})

}  // namespace fedcl::ood
