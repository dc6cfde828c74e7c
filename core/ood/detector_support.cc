#include "core/ood/detector_support.h"

#include "core/base/status_macros.h"

namespace fedcl::ood {

absl::Status NeedMatrix(const nn::Matrix* m, absl::string_view what, absl::string_view detector) {
  if (m == nullptr || m->rows() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(detector, " needs the batch's ", what));
  }
  if (!m->allFinite()) {
    return absl::InvalidArgumentError(absl::StrCat(detector, ": the ", what, " are not finite"));
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(absl::Span<const int32_t> labels, int64_t rows) {
  if (static_cast<int64_t>(labels.size()) != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels.size(), " labels for ", rows, " samples"));
  }
  for (int32_t y : labels) {
    if (y < 0) return absl::InvalidArgumentError(absl::StrCat("negative label ", y));
  }
  return absl::OkStatus();
}

absl::StatusOr<base::OptionText> ParseOptions(const DetectorContext& context,
                                              absl::string_view detector) {
  return base::OptionText::Parse(context.options, absl::StrCat("detector ", detector));
}

absl::Status FinishOptions(const base::OptionText& text, absl::string_view detector,
                           absl::string_view keys) {
  absl::Status s = text.CheckAllRead();
  if (s.ok()) return s;
  return absl::InvalidArgumentError(
      absl::StrCat(s.message(), "; ", detector,
                   keys.empty() ? " takes no options" : absl::StrCat(" takes: ", keys)));
}

absl::StatusOr<std::vector<float>> ScoreLogits(const OodDetector& detector, const OodBatch& batch) {
  FEDCL_RETURN_IF_ERROR(NeedMatrix(batch.logits, "logits", detector.name()));
  std::vector<float> scores(batch.logits->rows());
  FEDCL_RETURN_IF_ERROR(detector.ScoreInto(batch, absl::MakeSpan(scores)));
  return scores;
}

}  // namespace fedcl::ood
