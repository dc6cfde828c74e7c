// The layout of a class-statistics module (peft::ModuleRole::kClassStatistics): per-class feature
// sums and sample counts, which devices add to and the server sums exactly ("sum" rule). Two
// tensors, in this order:
//   "class_sums"   [classes, dim]  the sum of the features of every sample of each class
//   "class_counts" [classes]       how many samples each class's sum holds (whole numbers)
// Counts are floats like every module value: whole numbers up to 2^24 are exact.
//
//   nn::ParameterSet stats = peft::NewClassStatistics("class_statistics", 10, 64);
//   FEDCL_RETURN_IF_ERROR(peft::CheckClassStatistics(stats, 10, 64));  // a downloaded copy
//   FEDCL_RETURN_IF_ERROR(peft::CheckClassStatisticsDelta(delta_values, 10, 64));  // an upload
#ifndef FEDCL_CORE_PEFT_CLASS_STATISTICS_H_
#define FEDCL_CORE_PEFT_CLASS_STATISTICS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/nn/parameter_set.h"

namespace fedcl::peft {

// The largest count a statistics module holds per class: whole floats are exact up to 2^24.
inline constexpr double kMaxClassCount = 16777216.0;

// Zero sums and counts for `classes` classes of `dim` features.
nn::ParameterSet NewClassStatistics(absl::string_view name, int64_t classes, int64_t dim);

// A statistics module's values: the layout above for `classes` × `dim` (the tensor named when
// not), finite sums, and counts that are whole numbers in [0, kMaxClassCount]; a class with no
// samples has zero sums. InvalidArgument naming the tensor and class otherwise.
absl::Status CheckClassStatistics(const nn::ParameterSet& values, int64_t classes, int64_t dim);

// A delta of a statistics module (flat, in the layout's order): what a device adds is statistics
// too, so the same rules hold for it. A count cannot be taken back: a negative one is refused.
absl::Status CheckClassStatisticsDelta(absl::Span<const float> delta, int64_t classes, int64_t dim);

}  // namespace fedcl::peft

#endif  // FEDCL_CORE_PEFT_CLASS_STATISTICS_H_
