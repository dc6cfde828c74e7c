// SEMA's representation-descriptor z-score (algorithms.md §4.2-4.3) as an OOD detector: a
// descriptor is trained on the in-distribution token-mean features of a block's input
// (batch.layers[0]), its loss records fill during training, and a sample's OOD score is its
// z-score |ℓ(x) − μ| / σ against those records.
#ifndef FEDCL_CORE_CL_RD_DETECTOR_H_
#define FEDCL_CORE_CL_RD_DETECTOR_H_

#include <optional>

#include "core/cl/sema.h"
#include "core/ood/detectors.h"

namespace fedcl::cl {

struct RdDetectorOptions {
  int bottleneck = 16;
  int epochs = 20;
  int batch_size = 32;
  float learning_rate = 0.05f;
  uint64_t seed = 1;
};

class RdDetector final : public ood::OodDetector {
 public:
  explicit RdDetector(const RdDetectorOptions& options = {}) : options_(options) {}
  absl::string_view name() const override { return "rd_zscore"; }
  // Trains the descriptor on layers[0] (labels unused), shuffled each epoch.
  absl::Status Fit(const ood::OodBatch& batch, absl::Span<const int32_t> labels) override;
  absl::StatusOr<std::vector<float>> Score(const ood::OodBatch& batch) const override;

 private:
  RdDetectorOptions options_;
  std::optional<RepresentationDescriptor> descriptor_;
  LossRecords records_;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_RD_DETECTOR_H_
