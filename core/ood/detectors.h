// Out-of-distribution detectors behind one interface. Each turns a batch's logits, features or
// per-layer activations into one OOD score per sample, larger = more unusual; Calibrate sets the
// operating threshold at 95% TPR on held-out in-distribution data (ood_metrics.h).
//
//   FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<ood::OodDetector> detector,
//                          ood::MakeDetector("mahalanobis"));   // detector_registry.h
//   FEDCL_RETURN_IF_ERROR(detector->Fit({.features = &train_features}, train_labels));
//   FEDCL_RETURN_IF_ERROR(detector->Calibrate({.features = &held_out_features}));
//   FEDCL_ASSIGN_OR_RETURN(std::vector<float> scores, detector->Score({.features = &batch}));
//   bool flagged = detector->IsOod(scores[0]);
//
// The detectors themselves are one file each in detectors/ and are reached by name through the
// registry (detector_registry.h), which also says which of OodBatch's fields each one reads
// (FeatureNeeds). Built in:
// - max_softmax: u = −max_c softmax(f)_c (Hendrycks & Gimpel's baseline).
// - energy (§8.3): u = E(x) = −T·log Σ_c exp(f_c/T); lower energy is in-distribution.
// - mahalanobis (§8.4): class means and one shared covariance of the features,
//   u = min_c (z − μ_c)ᵀ Σ⁻¹ (z − μ_c) (no input pre-processing, no layer ensemble).
// - hdc (§7.2, HDFF): each hooked layer's activations, centred by one scalar per layer, are
//   projected by a fixed random semi-orthogonal matrix to D dimensions and bundled (summed);
//   class prototypes are bundled sums; u = −max_c cos(h(x), H_c).
// - rd_zscore (§4.2-4.3): SEMA's representation descriptor trained on the token means, u = its
//   loss's z-score against the losses recorded while it trained.
// - knn (Sun et al., ICML 2022): u = distance from the L2-normalised feature to its k-th nearest
//   normalised in-distribution feature.
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

// What a detector may look at for a batch of N samples (null = not provided). A host fills the
// fields a detector's FeatureNeeds name; a detector reads no others.
struct OodBatch {
  const nn::Matrix* logits = nullptr;    // N × C
  const nn::Matrix* features = nullptr;  // N × d, the head's input (penultimate features)
  // Per hooked layer, N × C_l (a learner hooks the ViT's CLS token after each block).
  std::vector<const nn::Matrix*> layers;
  // N × d: the mean over tokens of the last ViT block's input (what SEMA's descriptors read).
  const nn::Matrix* token_mean = nullptr;
};

// Which of OodBatch's fields a detector reads, for Fit, Calibrate and Score alike.
struct FeatureNeeds {
  bool logits = false;
  bool features = false;
  bool layers = false;      // the CLS token after each block (ViT)
  bool token_mean = false;  // the token mean of the last block's input (ViT)

  // Only logits: the host may score straight from a forward's output, with no hooks.
  bool LogitsOnly() const { return logits && !features && !layers && !token_mean; }
  // The needed fields in words ("logits, the CLS token after each block"), for messages.
  std::string Describe() const;
};

class OodDetector {
 public:
  virtual ~OodDetector() = default;
  // The name it is registered under.
  virtual absl::string_view name() const = 0;
  // Learns in-distribution from ID data (labels in [0, C) for the detectors whose registry entry
  // says fit_needs_labels; the others ignore them). Post-hoc scores need none.
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
