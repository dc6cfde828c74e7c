// hdc (algorithms.md §7.2, HDFF, Wilson et al. 2023): each hooked layer's activations, centred by
// one scalar per layer, are projected by a fixed random semi-orthogonal matrix to D dimensions and
// bundled (summed); class prototypes are bundled sums; u = −max_c cos(h(x), H_c).
//
// Registered as "hdc" (detector_registry.h), which is how hosts make it; this header exposes the
// class for tests of its projections and bundles. Options: `dimension` D (default 10000, >= 1).
// The projections are drawn from the context's seed, never stored or shipped.
#ifndef FEDCL_CORE_OOD_DETECTORS_HDC_H_
#define FEDCL_CORE_OOD_DETECTORS_HDC_H_

#include <cstdint>
#include <vector>

#include "core/ood/detectors.h"

namespace fedcl::ood {

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
  // Needs labels and every layer no wider than D.
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

}  // namespace fedcl::ood

#endif  // FEDCL_CORE_OOD_DETECTORS_HDC_H_
