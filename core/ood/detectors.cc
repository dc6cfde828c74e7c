#include "core/ood/detectors.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/ood/ood_metrics.h"

namespace fedcl::ood {

std::string FeatureNeeds::Describe() const {
  std::vector<absl::string_view> parts;
  if (logits) parts.push_back("logits");
  if (features) parts.push_back("the head's input features");
  if (layers) parts.push_back("the CLS token after each block");
  if (token_mean) parts.push_back("the token mean of the last block's input");
  return parts.empty() ? std::string("nothing") : absl::StrJoin(parts, ", ");
}

absl::Status OodDetector::Calibrate(const OodBatch& held_out, double tpr) {
  absl::StatusOr<std::vector<float>> scores = Score(held_out);
  if (!scores.ok()) return scores.status();
  absl::StatusOr<float> threshold = CalibratedThreshold(*scores, tpr);
  if (!threshold.ok()) return threshold.status();
  threshold_ = *threshold;
  calibrated_ = true;
  return absl::OkStatus();
}

absl::Status OodDetector::ScoreInto(const OodBatch& batch, absl::Span<float> out) const {
  FEDCL_ASSIGN_OR_RETURN(std::vector<float> scores, Score(batch));
  if (scores.size() != out.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": ", scores.size(), " scores for an output of ", out.size()));
  }
  std::copy(scores.begin(), scores.end(), out.begin());
  return absl::OkStatus();
}

ShiftMonitor::ShiftMonitor(int window, double rate)
    : flags_(static_cast<size_t>(std::max(window, 1)), 0), rate_(rate) {}

void ShiftMonitor::Add(bool flagged) {
  if (count_ == flags_.size()) {
    flagged_ -= flags_[next_];
  } else {
    ++count_;
  }
  flags_[next_] = flagged ? 1 : 0;
  flagged_ += flags_[next_];
  next_ = (next_ + 1) % flags_.size();
}

void ShiftMonitor::Reset() {
  std::fill(flags_.begin(), flags_.end(), 0);
  next_ = count_ = flagged_ = 0;
}

double ShiftMonitor::flagged_fraction() const {
  return count_ == 0 ? 0.0 : static_cast<double>(flagged_) / static_cast<double>(count_);
}

bool ShiftMonitor::Shifted() const {
  return count_ == flags_.size() && flagged_fraction() >= rate_;
}

}  // namespace fedcl::ood
