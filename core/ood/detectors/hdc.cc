#include "core/ood/detectors/hdc.h"

#include <algorithm>
#include <memory>

#include "Eigen/QR"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/ood/detector_support.h"

namespace fedcl::ood {
namespace {

// Rows scored at once: the bundles are N × D.
constexpr int64_t kChunk = 256;

absl::StatusOr<std::unique_ptr<OodDetector>> CreateHdc(const DetectorContext& context) {
  FEDCL_ASSIGN_OR_RETURN(base::OptionText text, ParseOptions(context, "hdc"));
  HdcOptions options{.seed = context.seed};
  FEDCL_RETURN_IF_ERROR(text.Read("dimension", &options.dimension));
  FEDCL_RETURN_IF_ERROR(FinishOptions(text, "hdc", "dimension"));
  if (options.dimension < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("detector hdc options: 'dimension' must be >= 1, got ", options.dimension));
  }
  return std::make_unique<HdcDetector>(options);
}

}  // namespace

absl::Status HdcDetector::Fit(const OodBatch& batch, absl::Span<const int32_t> labels) {
  if (batch.layers.empty()) return absl::InvalidArgumentError("hdc needs at least one layer");
  if (options_.dimension < 1) return absl::InvalidArgumentError("hdc: dimension must be >= 1");
  const int64_t n = batch.layers[0] == nullptr ? 0 : batch.layers[0]->rows();
  for (const nn::Matrix* layer : batch.layers) {
    if (absl::Status s = NeedMatrix(layer, "layer activations", name()); !s.ok()) return s;
    if (layer->rows() != n) return absl::InvalidArgumentError("hdc: layers disagree on N");
    if (layer->cols() > options_.dimension) {
      return absl::InvalidArgumentError(
          absl::StrCat("hdc: a layer of ", layer->cols(), " channels needs dimension >= that"));
    }
  }
  if (absl::Status s = CheckLabels(labels, n); !s.ok()) return s;
  projections_.clear();
  centres_.clear();
  for (size_t l = 0; l < batch.layers.size(); ++l) {
    const int64_t channels = batch.layers[l]->cols();
    // Semi-orthogonal projection: the thin Q of a Gaussian D × C_l matrix, transposed (rows
    // orthonormal), drawn from the seed so it never has to be stored or shipped.
    base::Rng rng = base::Rng::ForStream(options_.seed, {0x484443, l});
    Eigen::MatrixXd gaussian(options_.dimension, channels);
    for (int64_t j = 0; j < channels; ++j)
      for (int64_t i = 0; i < options_.dimension; ++i) gaussian(i, j) = rng.Normal();
    Eigen::HouseholderQR<Eigen::MatrixXd> qr(gaussian);
    const Eigen::MatrixXd q =
        qr.householderQ() * Eigen::MatrixXd::Identity(options_.dimension, channels);
    projections_.push_back(q.transpose().cast<float>());
    centres_.push_back(static_cast<float>(batch.layers[l]->cast<double>().mean()));
  }
  absl::StatusOr<nn::Matrix> h = Encode(batch);
  if (!h.ok()) return h.status();
  const int classes = *std::max_element(labels.begin(), labels.end()) + 1;
  prototypes_ = nn::Matrix::Zero(classes, options_.dimension);
  has_prototype_.assign(classes, false);
  for (int64_t i = 0; i < n; ++i) {
    prototypes_.row(labels[i]) += h->row(i);
    has_prototype_[labels[i]] = true;
  }
  for (int c = 0; c < classes; ++c) {
    const float norm = prototypes_.row(c).norm();
    if (norm > 0) prototypes_.row(c) /= norm;
  }
  return absl::OkStatus();
}

absl::StatusOr<nn::Matrix> HdcDetector::Encode(const OodBatch& batch) const {
  if (projections_.empty()) return absl::FailedPreconditionError("hdc: not fitted");
  if (batch.layers.size() != projections_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hdc: ", batch.layers.size(), " layers given, fitted on ", projections_.size()));
  }
  const int64_t n = batch.layers[0] == nullptr ? 0 : batch.layers[0]->rows();
  nn::Matrix h = nn::Matrix::Zero(n, options_.dimension);
  for (size_t l = 0; l < projections_.size(); ++l) {
    const nn::Matrix* layer = batch.layers[l];
    if (absl::Status s = NeedMatrix(layer, "layer activations", name()); !s.ok()) return s;
    if (layer->rows() != n || layer->cols() != projections_[l].rows()) {
      return absl::InvalidArgumentError(absl::StrCat("hdc: layer ", l, " is ", layer->rows(), "×",
                                                     layer->cols(), ", expected ", n, "×",
                                                     projections_[l].rows()));
    }
    h.noalias() += (layer->array() - centres_[l]).matrix() * projections_[l];
  }
  return h;
}

absl::StatusOr<std::vector<float>> HdcDetector::Score(const OodBatch& batch) const {
  if (projections_.empty()) return absl::FailedPreconditionError("hdc: not fitted");
  if (batch.layers.size() != projections_.size()) {  // none at all included
    return absl::InvalidArgumentError(absl::StrCat(
        "hdc: ", batch.layers.size(), " layers given, fitted on ", projections_.size()));
  }
  const int64_t n =
      batch.layers.empty() || batch.layers[0] == nullptr ? 0 : batch.layers[0]->rows();
  std::vector<float> scores(n);
  // In chunks: the bundles are N × D.
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t rows = std::min(kChunk, n - start);
    std::vector<nn::Matrix> slices;
    OodBatch chunk;
    slices.reserve(batch.layers.size());
    for (const nn::Matrix* layer : batch.layers) {
      if (layer == nullptr || layer->rows() != n) {
        return absl::InvalidArgumentError("hdc: layers disagree on N");
      }
      slices.push_back(layer->middleRows(start, rows));
    }
    for (const nn::Matrix& slice : slices) chunk.layers.push_back(&slice);
    absl::StatusOr<nn::Matrix> h = Encode(chunk);
    if (!h.ok()) return h.status();
    const nn::Matrix similarity = *h * prototypes_.transpose();  // rows × C, unnormalised in h
    for (int64_t i = 0; i < rows; ++i) {
      const float norm = h->row(i).norm();
      float best = -1.0f;
      for (int64_t c = 0; c < similarity.cols(); ++c) {
        if (has_prototype_[c]) best = std::max(best, norm > 0 ? similarity(i, c) / norm : 0.0f);
      }
      scores[start + i] = -best;
    }
  }
  return scores;
}

FEDCL_REGISTER_OOD_DETECTOR(hdc, {.description = "hyperdimensional feature fusion: cosine of the "
                                                 "bundled layer projections to the nearest "
                                                 "class prototype (Wilson et al. 2023)",
                                  .needs = {.layers = true},
                                  .fit_needs_labels = true,
                                  .create = &CreateHdc})

}  // namespace fedcl::ood
