// knn: deep nearest neighbours (Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep
// Nearest Neighbors", ICML 2022). Every penultimate feature vector (the head's input) is scaled to
// unit L2 norm; Fit stores the normalised in-distribution features, and a sample's score is the
// Euclidean distance from its normalised feature to the k-th nearest stored one: far from every
// in-distribution neighbour = unusual. No labels, no parametric assumption about the features.
//
// Options: `k` (default 50, the paper's CIFAR-10 setting; at least 1 and at most the number of
// stored features, checked at Fit) and `max_samples` (default 10000: Fit keeps a uniformly random
// subset of that many rows, drawn from the context's seed, when given more; the paper's α).
// A zero feature vector cannot be normalised and stays zero: its distance to every unit vector
// is 1.
//
// Cost: the stored set is max_samples × d floats (2.5 MB for 10000 × 64); Score takes one matrix
// product per chunk of 64 samples for the squared distances ‖a‖² + ‖b‖² − 2a·b (2 − 2a·b for unit
// vectors) and a linear-time selection of the k-th smallest per sample, not a sort.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/ood/detector_support.h"

namespace fedcl::ood {
namespace {

constexpr int64_t kChunk = 64;  // samples per distance product (kChunk × stored floats)

struct KnnOptions {
  int k = 50;
  int64_t max_samples = 10000;
  uint64_t seed = 1;
};

// Each row scaled to unit L2 norm; a zero row stays zero.
nn::Matrix Normalised(nn::ConstMatrixRef z) {
  nn::Matrix out = z;
  for (int64_t i = 0; i < out.rows(); ++i) {
    const float norm = out.row(i).norm();
    if (norm > 0.0f) out.row(i) /= norm;
  }
  return out;
}

// `count` of the rows [0, n), uniformly without replacement (a partial Fisher-Yates shuffle),
// in increasing order; all of them when count >= n.
std::vector<int64_t> Subsample(int64_t n, int64_t count, uint64_t seed) {
  std::vector<int64_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0);
  if (count >= n) return rows;
  base::Rng rng = base::Rng::ForStream(seed, {0x4b4e4e});
  for (int64_t i = 0; i < count; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.UniformInt(static_cast<uint64_t>(n - i)));
    std::swap(rows[i], rows[j]);
  }
  rows.resize(count);
  std::sort(rows.begin(), rows.end());
  return rows;
}

class KnnDetector final : public OodDetector {
 public:
  static absl::StatusOr<std::unique_ptr<OodDetector>> Create(const DetectorContext& context);
  explicit KnnDetector(const KnnOptions& options) : options_(options) {}
  absl::string_view name() const override { return "knn"; }
  // Stores the normalised features (labels unused). InvalidArgument, changing nothing, for
  // missing or non-finite features and for k above the number it would store.
  absl::Status Fit(const OodBatch& batch, absl::Span<const int32_t> labels) override;
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;

 private:
  KnnOptions options_;
  nn::Matrix stored_;             // m × d, unit rows (or zero)
  Eigen::RowVectorXf stored_sq_;  // their squared norms (1 or 0)
};

absl::StatusOr<std::unique_ptr<OodDetector>> KnnDetector::Create(const DetectorContext& context) {
  FEDCL_ASSIGN_OR_RETURN(base::OptionText text, ParseOptions(context, "knn"));
  KnnOptions o{.seed = context.seed};
  FEDCL_RETURN_IF_ERROR(text.Read("k", &o.k));
  FEDCL_RETURN_IF_ERROR(text.Read("max_samples", &o.max_samples));
  FEDCL_RETURN_IF_ERROR(FinishOptions(text, "knn", "k, max_samples"));
  if (o.k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("detector knn options: 'k' must be >= 1, got ", o.k));
  }
  if (o.max_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("detector knn options: 'max_samples' must be >= 1, got ", o.max_samples));
  }
  return std::make_unique<KnnDetector>(o);
}

absl::Status KnnDetector::Fit(const OodBatch& batch, absl::Span<const int32_t>) {
  FEDCL_RETURN_IF_ERROR(NeedMatrix(batch.features, "features", name()));
  const nn::Matrix& z = *batch.features;
  const std::vector<int64_t> rows = Subsample(z.rows(), options_.max_samples, options_.seed);
  const int64_t m = static_cast<int64_t>(rows.size());
  if (options_.k > m) {
    return absl::InvalidArgumentError(
        absl::StrCat("knn: 'k' (", options_.k, ") must be at most the number of stored features (",
                     m, m < z.rows() ? ", 'max_samples')" : ", the rows given)"));
  }
  nn::Matrix kept(m, z.cols());
  for (int64_t i = 0; i < m; ++i) kept.row(i) = z.row(rows[i]);
  stored_ = Normalised(kept);
  stored_sq_ = stored_.rowwise().squaredNorm().transpose();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> KnnDetector::Score(const OodBatch& batch) const {
  if (stored_.rows() == 0) return absl::FailedPreconditionError("knn: not fitted");
  FEDCL_RETURN_IF_ERROR(NeedMatrix(batch.features, "features", name()));
  const nn::Matrix& z = *batch.features;
  if (z.cols() != stored_.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("knn: features have ", z.cols(), " dimensions, fitted on ", stored_.cols()));
  }
  static_assert(nn::Matrix::IsRowMajor, "each row of distances must be contiguous");
  const int64_t m = stored_.rows(), k = options_.k;
  std::vector<float> scores(z.rows());
  nn::Matrix distances;  // rows × m squared distances, row-major: each row is contiguous
  for (int64_t start = 0; start < z.rows(); start += kChunk) {
    const int64_t rows = std::min(kChunk, z.rows() - start);
    const nn::Matrix q = Normalised(z.middleRows(start, rows));
    distances.noalias() = -2.0f * q * stored_.transpose();
    distances.rowwise() += stored_sq_;
    distances.colwise() += q.rowwise().squaredNorm();
    for (int64_t i = 0; i < rows; ++i) {
      float* row = distances.data() + i * m;
      std::nth_element(row, row + (k - 1), row + m);
      scores[start + i] = std::sqrt(std::max(row[k - 1], 0.0f));
    }
  }
  return scores;
}

}  // namespace

FEDCL_REGISTER_OOD_DETECTOR(knn, {.description = "distance to the k-th nearest L2-normalised "
                                                 "in-distribution feature (Sun et al. 2022)",
                                  .needs = {.features = true},
                                  .create = &KnnDetector::Create})

}  // namespace fedcl::ood
