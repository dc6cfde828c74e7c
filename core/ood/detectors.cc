#include "core/ood/detectors.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "Eigen/Cholesky"
#include "Eigen/QR"
#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/ood/ood_metrics.h"

namespace fedcl::ood {
namespace {

absl::Status Need(const nn::Matrix* m, absl::string_view what, absl::string_view detector) {
  if (m == nullptr || m->rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(detector, " needs the batch's ", what));
  }
  if (!m->allFinite()) {
    return absl::InvalidArgumentError(absl::StrCat(detector, ": the ", what, " are not finite"));
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(absl::Span<const int32_t> labels, int64_t rows) {
  if (static_cast<int64_t>(labels.size()) != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels.size(), " labels for ", rows, " samples"));
  }
  for (int32_t y : labels) {
    if (y < 0) return absl::InvalidArgumentError(absl::StrCat("negative label ", y));
  }
  return absl::OkStatus();
}

// Chunk of rows scored at once where a detector expands each sample (HDC: N × D).
constexpr int64_t kChunk = 256;

}  // namespace

absl::Status OodDetector::Calibrate(const OodBatch& held_out, double tpr) {
  absl::StatusOr<std::vector<float>> scores = Score(held_out);
  if (!scores.ok()) return scores.status();
  absl::StatusOr<float> threshold = CalibratedThreshold(*scores, tpr);
  if (!threshold.ok()) return threshold.status();
  threshold_ = *threshold;
  calibrated_ = true;
  return absl::OkStatus();
}

absl::Status OodDetector::ScoreInto(const OodBatch& batch, absl::Span<float> out) const {
  FEDCL_ASSIGN_OR_RETURN(std::vector<float> scores, Score(batch));
  if (scores.size() != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": ", scores.size(), " scores for an output of ", out.size()));
  }
  std::copy(scores.begin(), scores.end(), out.begin());
  return absl::OkStatus();
}

namespace {

// Scores of a logit-based detector: Score and ScoreInto share the loop.
template <typename PerRow>
absl::Status ScoreLogitsInto(const OodBatch& batch, absl::string_view detector, PerRow per_row,
                             absl::Span<float> out) {
  if (absl::Status s = Need(batch.logits, "logits", detector); !s.ok()) return s;
  const nn::Matrix& f = *batch.logits;
  if (static_cast<int64_t>(out.size()) != f.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat(detector, ": ", f.rows(), " rows for an output of ", out.size()));
  }
  for (int64_t i = 0; i < f.rows(); ++i) out[i] = per_row(f, i);
  return absl::OkStatus();
}

float MaxSoftmaxScore(const nn::Matrix& f, int64_t i) {
  // max softmax = 1 / Σ_c exp(f_c − max f).
  const float top = f.row(i).maxCoeff();
  return -1.0f / (f.row(i).array() - top).exp().sum();
}

}  // namespace

absl::Status MaxSoftmaxDetector::ScoreInto(const OodBatch& batch, absl::Span<float> out) const {
  return ScoreLogitsInto(batch, name(), MaxSoftmaxScore, out);
}

absl::StatusOr<std::vector<float>> MaxSoftmaxDetector::Score(const OodBatch& batch) const {
  if (absl::Status s = Need(batch.logits, "logits", name()); !s.ok()) return s;
  std::vector<float> scores(batch.logits->rows());
  FEDCL_RETURN_IF_ERROR(ScoreInto(batch, absl::MakeSpan(scores)));
  return scores;
}

absl::Status EnergyDetector::ScoreInto(const OodBatch& batch, absl::Span<float> out) const {
  const double t = temperature_;
  return ScoreLogitsInto(
      batch, name(),
      [t](const nn::Matrix& f, int64_t i) {
        // E = −T·logsumexp(f / T), computed stably around the largest logit.
        const double top = f.row(i).maxCoeff() / t;
        double sum = 0.0;
        for (int64_t c = 0; c < f.cols(); ++c) sum += std::exp(f(i, c) / t - top);
        return static_cast<float>(-t * (top + std::log(sum)));
      },
      out);
}

absl::StatusOr<std::vector<float>> EnergyDetector::Score(const OodBatch& batch) const {
  if (absl::Status s = Need(batch.logits, "logits", name()); !s.ok()) return s;
  std::vector<float> scores(batch.logits->rows());
  FEDCL_RETURN_IF_ERROR(ScoreInto(batch, absl::MakeSpan(scores)));
  return scores;
}

absl::Status MahalanobisDetector::Fit(const OodBatch& batch, absl::Span<const int32_t> labels) {
  if (absl::Status s = Need(batch.features, "features", name()); !s.ok()) return s;
  const nn::Matrix& z = *batch.features;
  if (absl::Status s = CheckLabels(labels, z.rows()); !s.ok()) return s;
  const int64_t d = z.cols();
  if (z.rows() <= d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mahalanobis: ", z.rows(), " samples cannot fit a ", d, "-dimensional covariance"));
  }
  const int classes = *std::max_element(labels.begin(), labels.end()) + 1;
  Eigen::MatrixXd sums = Eigen::MatrixXd::Zero(classes, d);
  std::vector<int64_t> counts(classes, 0);
  for (int64_t i = 0; i < z.rows(); ++i) {
    sums.row(labels[i]) += z.row(i).cast<double>();
    ++counts[labels[i]];
  }
  classes_.clear();
  for (int c = 0; c < classes; ++c) {
    if (counts[c] > 0) classes_.push_back(c);
  }
  means_.resize(static_cast<int64_t>(classes_.size()), d);
  for (size_t k = 0; k < classes_.size(); ++k)
    means_.row(k) = sums.row(classes_[k]) / static_cast<double>(counts[classes_[k]]);
  // Shared covariance of the class-centred features (1/n, as sklearn's EmpiricalCovariance).
  Eigen::MatrixXd centred(z.rows(), d);
  std::vector<int> row_of(classes, -1);
  for (size_t k = 0; k < classes_.size(); ++k) row_of[classes_[k]] = static_cast<int>(k);
  for (int64_t i = 0; i < z.rows(); ++i)
    centred.row(i) = z.row(i).cast<double>() - means_.row(row_of[labels[i]]);
  Eigen::MatrixXd covariance = centred.transpose() * centred / static_cast<double>(z.rows());
  const double ridge = 1e-6 * std::max(covariance.trace() / static_cast<double>(d), 1e-12);
  covariance.diagonal().array() += ridge;
  Eigen::LDLT<Eigen::MatrixXd> ldlt(covariance);
  if (ldlt.info() != Eigen::Success) {
    return absl::InvalidArgumentError("mahalanobis: the feature covariance cannot be inverted");
  }
  precision_ = ldlt.solve(Eigen::MatrixXd::Identity(d, d));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> MahalanobisDetector::Score(const OodBatch& batch) const {
  if (precision_.size() == 0) return absl::FailedPreconditionError("mahalanobis: not fitted");
  if (absl::Status s = Need(batch.features, "features", name()); !s.ok()) return s;
  const nn::Matrix& z = *batch.features;
  if (z.cols() != precision_.rows()) {
    return absl::InvalidArgumentError(absl::StrCat("mahalanobis: features have ", z.cols(),
                                                   " dimensions, fitted on ", precision_.rows()));
  }
  const Eigen::MatrixXd zd = z.cast<double>();
  Eigen::VectorXd best = Eigen::VectorXd::Constant(z.rows(), std::numeric_limits<double>::max());
  for (int64_t k = 0; k < means_.rows(); ++k) {
    const Eigen::MatrixXd diff = zd.rowwise() - means_.row(k);
    const Eigen::VectorXd distance = ((diff * precision_).array() * diff.array()).rowwise().sum();
    best = best.cwiseMin(distance);
  }
  std::vector<float> scores(z.rows());
  for (int64_t i = 0; i < z.rows(); ++i) scores[i] = static_cast<float>(best[i]);
  return scores;
}

absl::Status HdcDetector::Fit(const OodBatch& batch, absl::Span<const int32_t> labels) {
  if (batch.layers.empty()) return absl::InvalidArgumentError("hdc needs at least one layer");
  if (options_.dimension < 1) return absl::InvalidArgumentError("hdc: dimension must be >= 1");
  const int64_t n = batch.layers[0] == nullptr ? 0 : batch.layers[0]->rows();
  for (const nn::Matrix* layer : batch.layers) {
    if (absl::Status s = Need(layer, "layer activations", name()); !s.ok()) return s;
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
    if (absl::Status s = Need(layer, "layer activations", name()); !s.ok()) return s;
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

ShiftMonitor::ShiftMonitor(int window, double rate)
    : flags_(static_cast<size_t>(std::max(window, 1)), 0), rate_(rate) {}

void ShiftMonitor::Add(bool flagged) {
  if (count_ == flags_.size()) {
    flagged_ -= flags_[next_];
  } else {
    ++count_;
  }
  flags_[next_] = flagged ? 1 : 0;
  flagged_ += flags_[next_];
  next_ = (next_ + 1) % flags_.size();
}

void ShiftMonitor::Reset() {
  std::fill(flags_.begin(), flags_.end(), 0);
  next_ = count_ = flagged_ = 0;
}

double ShiftMonitor::flagged_fraction() const {
  return count_ == 0 ? 0.0 : static_cast<double>(flagged_) / static_cast<double>(count_);
}

bool ShiftMonitor::Shifted() const {
  return count_ == flags_.size() && flagged_fraction() >= rate_;
}

}  // namespace fedcl::ood
