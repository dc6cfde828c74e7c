#include "core/ood/shift_tests.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"

namespace fedcl::ood {
namespace {

constexpr int kSamplesPer10k = 10000;

absl::Status CheckRate(double rate, absl::string_view owner) {
  if (!(rate > 0.0 && rate <= 1000.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(owner, ": false_alarms_per_10k must be in (0, 1000], got ", rate));
  }
  return absl::OkStatus();
}

// Alarms of a CUSUM with threshold `h` over `streams` streams of 10,000 standardised scores
// resampled from `z` (the same draws for every h, so the count is monotone in h).
int64_t CountAlarms(absl::Span<const double> z, double allowance, double h, int streams,
                    uint64_t seed) {
  int64_t alarms = 0;
  for (int s = 0; s < streams; ++s) {
    base::Rng rng = base::Rng::ForStream(seed, {0x4355535543ULL, static_cast<uint64_t>(s)});
    double g = 0.0;
    for (int t = 0; t < kSamplesPer10k; ++t) {
      g = std::max(0.0, g + z[rng.UniformInt(z.size())] - allowance);
      if (g > h) {
        ++alarms;
        g = 0.0;
      }
    }
  }
  return alarms;
}

}  // namespace

absl::StatusOr<CusumTest> CusumTest::Calibrate(absl::Span<const float> clean,
                                               const CusumOptions& options) {
  constexpr absl::string_view kOwner = "cusum";
  if (auto rate = CheckRate(options.false_alarms_per_10k, kOwner); !rate.ok()) return rate;
  if (!(options.allowance > 0.0 && options.allowance <= 10.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cusum: allowance must be in (0, 10], got ", options.allowance));
  }
  if (options.calibration_streams < 8 || options.calibration_streams > 10000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cusum: calibration_streams must be in [8, 10000], got ", options.calibration_streams));
  }
  if (clean.size() < 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("cusum: needs at least 16 clean scores, got ", clean.size()));
  }
  double sum = 0.0;
  for (float s : clean) {
    if (!std::isfinite(s)) return absl::InvalidArgumentError("cusum: a clean score is not finite");
    sum += s;
  }
  const double mean = sum / static_cast<double>(clean.size());
  double squares = 0.0;
  for (float s : clean) squares += (s - mean) * (s - mean);
  const double stddev = std::sqrt(squares / static_cast<double>(clean.size() - 1));
  if (!(stddev > 1e-12 * std::max(1.0, std::abs(mean)))) {
    return absl::InvalidArgumentError("cusum: the clean scores do not vary");
  }
  std::vector<double> z(clean.size());
  for (size_t i = 0; i < clean.size(); ++i) z[i] = (clean[i] - mean) / stddev;

  // The alarm count falls as h grows: bisect for the smallest h within the budget.
  const double budget = options.false_alarms_per_10k * options.calibration_streams;
  double low = 0.0, high = 1.0;
  while (CountAlarms(z, options.allowance, high, options.calibration_streams, options.seed) >
         budget) {
    low = high;
    high *= 2.0;
    if (high > 1e6) return absl::InternalError("cusum: no threshold meets the rate");
  }
  for (int i = 0; i < 40 && high - low > 1e-4 * high; ++i) {
    const double mid = 0.5 * (low + high);
    if (CountAlarms(z, options.allowance, mid, options.calibration_streams, options.seed) >
        budget) {
      low = mid;
    } else {
      high = mid;
    }
  }
  return CusumTest(mean, stddev, options.allowance, high, *std::max_element(z.begin(), z.end()));
}

bool CusumTest::Observe(float score) {
  const double z = std::min((score - mean_) / stddev_, clip_);
  statistic_ = std::max(0.0, statistic_ + z - allowance_);
  if (!(statistic_ > threshold_)) return false;
  statistic_ = 0.0;
  return true;
}

static double GaussianKernel(const float* a, const float* b, Eigen::Index d, double bandwidth) {
  const double squared =
      (Eigen::Map<const nn::Vector>(a, d) - Eigen::Map<const nn::Vector>(b, d)).squaredNorm();
  return std::exp(-squared / (2.0 * bandwidth * bandwidth));
}

// The mean of k over pairs of distinct rows of `x`.
static double WithinTerm(const nn::Matrix& x, double bandwidth) {
  const Eigen::Index n = x.rows();
  double sum = 0.0;
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = i + 1; j < n; ++j) {
      sum += GaussianKernel(x.row(i).data(), x.row(j).data(), x.cols(), bandwidth);
    }
  }
  return 2.0 * sum / (static_cast<double>(n) * static_cast<double>(n - 1));
}

// The mean of k over all pairs (row of x, row of y).
static double AcrossTerm(const nn::Matrix& x, const nn::Matrix& y, double bandwidth) {
  double sum = 0.0;
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    for (Eigen::Index j = 0; j < y.rows(); ++j) {
      sum += GaussianKernel(x.row(i).data(), y.row(j).data(), x.cols(), bandwidth);
    }
  }
  return sum / (static_cast<double>(x.rows()) * static_cast<double>(y.rows()));
}

double UnbiasedMmd2(const nn::Matrix& x, const nn::Matrix& y, double bandwidth) {
  return WithinTerm(x, bandwidth) + WithinTerm(y, bandwidth) - 2.0 * AcrossTerm(x, y, bandwidth);
}

double MmdWindowTest::Mmd2(const nn::Matrix& window) const {
  return WithinTerm(window, bandwidth_) + reference_term_ -
         2.0 * AcrossTerm(window, reference_, bandwidth_);
}

absl::StatusOr<MmdWindowTest> MmdWindowTest::Calibrate(const nn::Matrix& clean,
                                                       const MmdOptions& options) {
  constexpr absl::string_view kOwner = "mmd";
  if (auto rate = CheckRate(options.false_alarms_per_10k, kOwner); !rate.ok()) return rate;
  if (options.window < 4 || options.window > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("mmd: window must be in [4, 4096], got ", options.window));
  }
  if (options.reference < 8 || options.reference > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("mmd: reference must be in [8, 65536], got ", options.reference));
  }
  if (options.stride < 1 || options.stride > options.window) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mmd: stride must be in [1, window = ", options.window, "], got ", options.stride));
  }
  const double alpha = options.false_alarms_per_10k * options.stride / kSamplesPer10k;
  if (alpha >= 0.5) {
    return absl::InvalidArgumentError(
        absl::StrCat("mmd: false_alarms_per_10k ", options.false_alarms_per_10k, " with stride ",
                     options.stride, " asks every other test to fire on clean data"));
  }
  if (options.calibration_windows < 10.0 / alpha || options.calibration_windows > 10000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mmd: calibration_windows must be at least 10/alpha = ", std::ceil(10.0 / alpha),
        " for a per-test false-alarm probability alpha = ", alpha, ", got ",
        options.calibration_windows));
  }
  if (clean.rows() < options.reference + options.window || clean.cols() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mmd: needs at least reference + window = ", options.reference + options.window,
        " clean samples, got ", clean.rows()));
  }
  if (!clean.allFinite()) return absl::InvalidArgumentError("mmd: a clean value is not finite");

  MmdWindowTest test;
  test.options_ = options;
  std::vector<int> order(static_cast<size_t>(clean.rows()));
  std::iota(order.begin(), order.end(), 0);
  base::Rng rng = base::Rng::ForStream(options.seed, {0x4d4d44ULL});
  rng.Shuffle(order);
  test.reference_.resize(options.reference, clean.cols());
  for (int i = 0; i < options.reference; ++i) test.reference_.row(i) = clean.row(order[i]);
  // The median pairwise distance of the reference (over at most 64 of its rows).
  std::vector<double> distances;
  const int rows = std::min(options.reference, 64);
  for (int i = 0; i < rows; ++i) {
    for (int j = i + 1; j < rows; ++j) {
      distances.push_back((test.reference_.row(i) - test.reference_.row(j)).norm());
    }
  }
  std::nth_element(distances.begin(), distances.begin() + distances.size() / 2, distances.end());
  test.bandwidth_ = distances[distances.size() / 2];
  if (!(test.bandwidth_ > 0.0)) {
    return absl::InvalidArgumentError("mmd: the clean reference samples are all equal");
  }
  test.reference_term_ = WithinTerm(test.reference_, test.bandwidth_);

  // The null distribution: windows of held-out clean samples (drawn without replacement within
  // a window, with replacement across windows).
  const std::vector<int> held(order.begin() + options.reference, order.end());
  std::vector<double> null(static_cast<size_t>(options.calibration_windows));
  nn::Matrix window(options.window, clean.cols());
  std::vector<int> picks = held;
  for (double& statistic : null) {
    for (int i = 0; i < options.window; ++i) {
      const size_t j = i + rng.UniformInt(picks.size() - i);
      std::swap(picks[i], picks[j]);
      window.row(i) = clean.row(picks[i]);
    }
    statistic = test.Mmd2(window);
  }
  const size_t rank =
      std::min(null.size() - 1, static_cast<size_t>(std::ceil((1.0 - alpha) * null.size())));
  std::nth_element(null.begin(), null.begin() + rank, null.end());
  test.threshold_ = null[rank];
  return test;
}

absl::StatusOr<bool> MmdWindowTest::Observe(absl::Span<const float> features) {
  if (static_cast<Eigen::Index>(features.size()) != reference_.cols()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "mmd: a sample has ", features.size(), " features, the clean data ", reference_.cols()));
  }
  window_.emplace_back(features.begin(), features.end());
  if (static_cast<int>(window_.size()) > options_.window) window_.pop_front();
  if (++since_test_ < options_.stride || static_cast<int>(window_.size()) < options_.window) {
    return false;
  }
  since_test_ = 0;
  nn::Matrix window(options_.window, reference_.cols());
  for (int i = 0; i < options_.window; ++i) {
    window.row(i) = Eigen::Map<const nn::Vector>(window_[i].data(), reference_.cols());
  }
  if (!(Mmd2(window) > threshold_)) return false;
  Reset();
  return true;
}

void MmdWindowTest::Reset() {
  window_.clear();
  since_test_ = 0;
}

}  // namespace fedcl::ood
