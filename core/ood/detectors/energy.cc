// energy (algorithms.md §8.3): u = E(x) = −T·log Σ_c exp(f_c/T) (Liu et al., 2020); lower energy
// is in-distribution. Option: `temperature` T (default 1, > 0). No fitting.
#include <cmath>
#include <memory>

#include "core/base/status_macros.h"
#include "core/ood/detector_support.h"

namespace fedcl::ood {
namespace {

class EnergyDetector final : public OodDetector {
 public:
  static absl::StatusOr<std::unique_ptr<OodDetector>> Create(const DetectorContext& context) {
    FEDCL_ASSIGN_OR_RETURN(base::OptionText text, ParseOptions(context, "energy"));
    float temperature = 1.0f;
    FEDCL_RETURN_IF_ERROR(text.Read("temperature", &temperature));
    FEDCL_RETURN_IF_ERROR(FinishOptions(text, "energy", "temperature"));
    if (!(temperature > 0.0f)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "detector energy options: 'temperature' must be positive, got ", temperature));
    }
    return std::make_unique<EnergyDetector>(temperature);
  }
  explicit EnergyDetector(float temperature) : temperature_(temperature) {}
  absl::string_view name() const override { return "energy"; }
  absl::StatusOr<std::vector<float>> Score(const OodBatch& batch) const override {
    return ScoreLogits(*this, batch);
  }
  absl::Status ScoreInto(const OodBatch& batch, absl::Span<float> out) const override {
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

 private:
  float temperature_;
};

}  // namespace

FEDCL_REGISTER_OOD_DETECTOR(energy, {.description = "free energy −T·logsumexp(logits / T) "
                                                    "(Liu et al. 2020)",
                                     .needs = {.logits = true},
                                     .create = &EnergyDetector::Create})

}  // namespace fedcl::ood
