// What the detectors in detectors/ share: checks of a batch's inputs with messages that name the
// detector and the field, the parsing of a detector's options, and the loop of the logit-based
// scores. For detector authors; hosts use detector_registry.h.
#ifndef FEDCL_CORE_OOD_DETECTOR_SUPPORT_H_
#define FEDCL_CORE_OOD_DETECTOR_SUPPORT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/base/option_text.h"
#include "core/nn/tensor.h"
#include "core/ood/detector_registry.h"
#include "core/ood/detectors.h"

namespace fedcl::ood {

// InvalidArgument "<detector> needs the batch's <what>" for a null or empty matrix, and
// "<detector>: the <what> are not finite" for NaN or infinity.
absl::Status NeedMatrix(const nn::Matrix* m, absl::string_view what, absl::string_view detector);

// InvalidArgument unless there is one label per row and none is negative.
absl::Status CheckLabels(absl::Span<const int32_t> labels, int64_t rows);

// The context's options, to be read key by key; messages name "detector <name>".
absl::StatusOr<base::OptionText> ParseOptions(const DetectorContext& context,
                                              absl::string_view detector);
// CheckAllRead, with the detector's keys (`keys`, e.g. "k, max_samples", or "" for none) added to
// the message of an unknown one.
absl::Status FinishOptions(const base::OptionText& text, absl::string_view detector,
                           absl::string_view keys);

// The scores of a logit-based detector into `out`, one `per_row(logits, i)` per row: Score and
// ScoreInto share it, and it allocates nothing.
template <typename PerRow>
absl::Status ScoreLogitsInto(const OodBatch& batch, absl::string_view detector, PerRow per_row,
                             absl::Span<float> out) {
  if (absl::Status s = NeedMatrix(batch.logits, "logits", detector); !s.ok()) return s;
  const nn::Matrix& f = *batch.logits;
  if (static_cast<int64_t>(out.size()) != f.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat(detector, ": ", f.rows(), " rows for an output of ", out.size()));
  }
  for (int64_t i = 0; i < f.rows(); ++i) out[i] = per_row(f, i);
  return absl::OkStatus();
}

// Score of a logit-based detector whose ScoreInto does the work: one score per row of logits.
absl::StatusOr<std::vector<float>> ScoreLogits(const OodDetector& detector, const OodBatch& batch);

}  // namespace fedcl::ood

#endif  // FEDCL_CORE_OOD_DETECTOR_SUPPORT_H_
