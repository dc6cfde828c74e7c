// Out-of-distribution detectors behind one interface. Each turns a batch's logits, features or
// per-layer activations into one OOD score per sample, larger = more unusual; Calibrate sets the
// operating threshold at 95% TPR on held-out in-distribution data (ood_metrics.h).
//
//   ood::MahalanobisDetector detector;
//   FEDCL_RETURN_IF_ERROR(detector.Fit({.features = &train_features}, train_labels));
//   FEDCL_RETURN_IF_ERROR(detector.Calibrate({.features = &held_out_features}));
//   FEDCL_ASSIGN_OR_RETURN(std::vector<float> scores, detector.Score({.features = &batch}));
//   bool flagged = detector.IsOod(scores[0]);
//
// - MaxSoftmaxDetector: u = −max_c softmax(f)_c (Hendrycks & Gimpel's baseline).
// - EnergyDetector (§8.3): u = E(x) = −T·log Σ_c exp(f_c/T); lower energy is in-distribution.
// - MahalanobisDetector (§8.4): class means and one shared covariance of the features,
//   u = min_c (z − μ_c)ᵀ Σ⁻¹ (z − μ_c) (no input pre-processing, no layer ensemble).
// - HdcDetector (§7.2, HDFF): each hooked layer's activations, centred by one scalar per layer,
//   are projected by a fixed random semi-orthogonal matrix to D dimensions and bundled (summed);
//   class prototypes are bundled sums; u = −max_c cos(h(x), H_c).
//
// Not thread-safe for Fit/Calibrate; Score is const and may run concurrently.
#ifndef FEDCL_CORE_OOD_DETECTORS_H_
#define FEDCL_CORE_OOD_DETECTORS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/nn/tensor.h"

namespace fedcl::ood {

// What a detector may look at for a batch of N samples (null = not provided).
struct OodBatch {
  const nn::Matrix* logits = nullptr;    // N × C
  const nn::Matrix* features = nullptr;  // N × d, the head's input
  // Per hooked layer, N × C_l (e.g. the ViT's CLS token after each block).
  std::vector<const nn::Matrix*> layers;
};

class OodDetector {
 public:
  virtual ~OodDetector() = default;
  virtual absl::string_view name() const = 0;
  // Learns in-distribution from labelled ID data (labels in [0, C)). Post-hoc scores need none.
  virtual absl::Status Fit(const OodBatch& batch, absl::Span<const int32_t> labels) {
    return absl::OkStatus();
  }
  virtual absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const = 0;
  // The same scores written into `out` (one per row). The logit-based detectors allocate
  // nothing; the others fall back to Score.
  virtual absl::Status ScoreInto(const OodBatch& batch, absl::Span<float> out) const;

  // Sets the threshold that keeps `tpr` of the held-out ID samples (scores <= it).
  absl::Status Calibrate(const OodBatch& held_out, double tpr = 0.95);
  bool calibrated() const { return calibrated_; }
  float threshold() const { return threshold_; }
  bool IsOod(float score) const { return calibrated_ && score > threshold_; }

 private:
  bool calibrated_ = false;
  float threshold_ = 0.0f;
};

class MaxSoftmaxDetector final : public OodDetector {
 public:
  absl::string_view name() const override { return "max_softmax"; }
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;
  absl::Status ScoreInto(const OodBatch& batch, absl::Span<float> out) const override;
};

class EnergyDetector final : public OodDetector {
 public:
  explicit EnergyDetector(float temperature = 1.0f) : temperature_(temperature) {}
  absl::string_view name() const override { return "energy"; }
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;
  absl::Status ScoreInto(const OodBatch& batch, absl::Span<float> out) const override;

 private:
  float temperature_;
};

class MahalanobisDetector final : public OodDetector {
 public:
  absl::string_view name() const override { return "mahalanobis"; }
  // Needs at least one sample per class seen and d + 1 samples. A singular covariance (fewer
  // independent directions than d) gets a ridge of 1e-6 times its mean variance.
  absl::Status Fit(const OodBatch& batch, absl::Span<const int32_t> labels) override;
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;

 private:
  Eigen::MatrixXd means_;      // C × d (classes without samples are skipped)
  Eigen::MatrixXd precision_;  // d × d
  std::vector<int> classes_;   // rows of means_ in use
};

struct HdcOptions {
  int dimension = 10000;  // D
  uint64_t seed = 1;      // the projections are regenerated from it, never stored elsewhere
};

class HdcDetector final : public OodDetector {
 public:
  explicit HdcDetector(const HdcOptions& options = {}) : options_(options) {}
  absl::string_view name() const override { return "hdc"; }
  // Draws the projections (one per layer, from the seed), the per-layer centring scalars
  // (mean over channels of the mean activation) and the class prototypes (bundled sums).
  absl::Status Fit(const OodBatch& batch, absl::Span<const int32_t> labels) override;
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override;

  // C_l × D with orthonormal rows (exposed for tests).
  const nn::Matrix& projection(int layer) const { return projections_[layer]; }
  // The D-dimensional bundle of each sample (N × D).
  absl::StatusOr<nn::Matrix> Encode(const OodBatch& batch) const;

 private:
  HdcOptions options_;
  std::vector<nn::Matrix> projections_;
  std::vector<float> centres_;  // μ_l
  nn::Matrix prototypes_;       // C × D, each row normalised (cosine only needs the direction)
  std::vector<bool> has_prototype_;
};

// A stream-level shift signal: one odd sample must not trigger growth. Keeps the flags of the
// last `window` samples; Shifted() once the window is full and at least `rate` of it is flagged.
class ShiftMonitor {
 public:
  ShiftMonitor(int window, double rate);
  void Add(bool flagged);
  void Reset();
  bool Shifted() const;
  double flagged_fraction() const;
  int size() const { return static_cast<int>(count_); }

 private:
  std::vector<uint8_t> flags_;
  size_t next_ = 0, count_ = 0, flagged_ = 0;
  double rate_;
};

}  // namespace fedcl::ood

#endif  // FEDCL_CORE_OOD_DETECTORS_H_
