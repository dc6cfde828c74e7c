// Shift detection the way a device sees its data: as a stream, decided over many samples rather
// than one. Per-sample OOD scores overlap between clean and shifted data (a representation
// descriptor's z-score has a per-sample AUROC near 0.5 on rotation, noise and blur), but a
// shift moves their distribution, which a test over a stream can see. Two tests, each calibrated
// on clean data to a false-alarm rate per 10,000 clean samples:
//
//   CUSUM (Page, 1954) on a per-sample score s_t (any detector's, detectors.h):
//     g_t = max(0, g_{t−1} + (s_t − μ0)/σ0 − k),  alarm when g_t > h, then g restarts at 0;
//     μ0, σ0 from the clean scores; k (allowance, in σ0) is the smallest standardised mean shift
//     worth detecting halved, as usual; h is the smallest threshold whose alarm rate on streams
//     resampled from the clean scores is at most the target. Each standardised score is clipped
//     at the largest clean one: the resampled streams never go beyond it, so a clean tail the
//     calibration sample missed cannot raise alarms it did not count (a few hundred clean
//     scores say little about a 1-in-10,000 event); a shift moves the bulk, which the clip
//     leaves alone.
//
//   MMD window test (Gretton et al., 2012) on features (penultimate features, token means):
//     every `stride` samples, the unbiased MMD² between the last `window` samples and a clean
//     reference set, with a Gaussian kernel of the reference's median pairwise distance;
//     alarm when it exceeds the (1 − α) quantile of its null distribution, estimated from
//     `calibration_windows` windows of held-out clean samples; α = rate · stride / 10,000, so
//     that the alarms per 10,000 clean samples are at most the rate.
//
//   FEDCL_ASSIGN_OR_RETURN(ood::CusumTest cusum, ood::CusumTest::Calibrate(clean_scores, {}));
//   for (float s : stream_scores) if (cusum.Observe(s)) { ... a shift: grow, re-fit, ... }
//
// Not thread-safe (Observe changes the test's state).
#ifndef FEDCL_CORE_OOD_SHIFT_TESTS_H_
#define FEDCL_CORE_OOD_SHIFT_TESTS_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/nn/tensor.h"

namespace fedcl::ood {

struct CusumOptions {
  double allowance = 0.5;             // k, in clean standard deviations, > 0
  double false_alarms_per_10k = 1.0;  // target on clean data, in (0, 1000]
  // Resampled clean streams of 10,000 samples the threshold is calibrated on (>= 8).
  int calibration_streams = 64;
  uint64_t seed = 1;
};

class CusumTest {
 public:
  // InvalidArgument naming the field for an option out of range, fewer than 16 clean scores, a
  // non-finite one, or clean scores that do not vary.
  static absl::StatusOr<CusumTest> Calibrate(absl::Span<const float> clean,
                                             const CusumOptions& options);
  // One score; true when it raises an alarm (the statistic then restarts at 0).
  bool Observe(float score);
  void Reset() { statistic_ = 0.0; }

  double mean() const { return mean_; }
  double stddev() const { return stddev_; }
  double threshold() const { return threshold_; }
  double statistic() const { return statistic_; }

 private:
  CusumTest(double mean, double stddev, double allowance, double threshold, double clip)
      : mean_(mean), stddev_(stddev), allowance_(allowance), threshold_(threshold), clip_(clip) {}
  double mean_, stddev_, allowance_, threshold_;
  double clip_;  // the largest standardised clean score
  double statistic_ = 0.0;
};

// The unbiased estimate of MMD² (Gretton et al., 2012, eq. 3) between samples `x` and `y`
// (rows; at least 2 each, same columns) with the Gaussian kernel exp(−‖a − b‖² / (2σ²)).
double UnbiasedMmd2(const nn::Matrix& x, const nn::Matrix& y, double bandwidth);

struct MmdOptions {
  int window = 64;                    // samples tested together, >= 4
  int reference = 256;                // clean samples the windows are compared with, >= 8
  int stride = 16;                    // samples between tests, in [1, window]
  double false_alarms_per_10k = 1.0;  // target on clean data, in (0, 1000]
  // Null windows drawn from the clean samples beyond the reference; at least 10/α of them.
  int calibration_windows = 8000;
  uint64_t seed = 1;
};

class MmdWindowTest {
 public:
  // `clean`: rows are samples; the first `reference` rows of a seeded shuffle are the reference,
  // the rest give the null windows. InvalidArgument naming the field for an option out of range,
  // too few clean rows (reference + window), too few calibration windows for the rate, or
  // non-finite values.
  static absl::StatusOr<MmdWindowTest> Calibrate(const nn::Matrix& clean,
                                                 const MmdOptions& options);
  // One sample's features; true when the test it completes raises an alarm. After an alarm
  // the window starts empty. InvalidArgument, changing nothing, for a sample whose size is not
  // the clean data's column count.
  absl::StatusOr<bool> Observe(absl::Span<const float> features);
  void Reset();

  // UnbiasedMmd2(window, reference, bandwidth()), with the reference's own term computed once.
  // Its null mean is not 0 for one fixed reference, which is why the threshold comes from null
  // windows against that same reference.
  double Mmd2(const nn::Matrix& window) const;
  double threshold() const { return threshold_; }
  double bandwidth() const { return bandwidth_; }
  const nn::Matrix& reference() const { return reference_; }

 private:
  MmdWindowTest() = default;

  MmdOptions options_;
  nn::Matrix reference_;
  double reference_term_ = 0.0;  // the mean of k(r, r') over pairs of distinct reference rows
  double bandwidth_ = 1.0;       // σ of exp(−‖a − b‖² / (2σ²))
  double threshold_ = 0.0;
  std::deque<std::vector<float>> window_;
  int since_test_ = 0;
};

}  // namespace fedcl::ood

#endif  // FEDCL_CORE_OOD_SHIFT_TESTS_H_
