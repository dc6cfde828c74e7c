// max_softmax: u = −max_c softmax(f)_c, Hendrycks & Gimpel's baseline. No options, no fitting.
#include <memory>

#include "core/base/status_macros.h"
#include "core/ood/detector_support.h"

namespace fedcl::ood {
namespace {

float MaxSoftmaxScore(const nn::Matrix& f, int64_t i) {
  // max softmax = 1 / Σ_c exp(f_c − max f).
  const float top = f.row(i).maxCoeff();
  return -1.0f / (f.row(i).array() - top).exp().sum();
}

class MaxSoftmaxDetector final : public OodDetector {
 public:
  static absl::StatusOr<std::unique_ptr<OodDetector>> Create(const DetectorContext& context) {
    FEDCL_ASSIGN_OR_RETURN(base::OptionText text, ParseOptions(context, "max_softmax"));
    FEDCL_RETURN_IF_ERROR(FinishOptions(text, "max_softmax", ""));
    return std::make_unique<MaxSoftmaxDetector>();
  }
  absl::string_view name() const override { return "max_softmax"; }
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override {
    return ScoreLogits(*this, batch);
  }
  absl::Status ScoreInto(const OodBatch& batch, absl::Span<float> out) const override {
    return ScoreLogitsInto(batch, name(), MaxSoftmaxScore, out);
  }
};

}  // namespace

FEDCL_REGISTER_OOD_DETECTOR(max_softmax, {.description = "negative maximum softmax probability "
                                                         "(Hendrycks & Gimpel)",
                                          .needs = {.logits = true},
                                          .create = &MaxSoftmaxDetector::Create})

}  // namespace fedcl::ood
