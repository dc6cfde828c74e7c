#include "core/fl/rules/sum_state.h"

#include "absl/strings/str_cat.h"

namespace fedcl::fl {

absl::Status SumState::Fold(ClientId client, absl::Span<const float> delta, double weight) {
  return sum_.Add(delta, weight);
}

absl::Status SumState::CheckFinish(const RoundTotals& totals) const {
  if (totals.folded > 0 && divisor_ == Divisor::kEnrolled && totals.enrolled < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", totals.round, ": ", rule_, " divides by N = ", totals.enrolled));
  }
  return absl::OkStatus();
}

absl::Status SumState::Finish(const RoundTotals& totals, absl::Span<float> params) {
  if (totals.folded == 0) return absl::OkStatus();
  const int64_t divisor = divisor_ == Divisor::kEnrolled       ? totals.enrolled
                          : divisor_ == Divisor::kParticipants ? totals.participants
                                                               : 1;
  return sum_.DrainInto(params, gamma_ / static_cast<double>(divisor));
}

int64_t SumState::memory_bytes() const { return sum_.memory_bytes(); }

}  // namespace fedcl::fl
