#include "core/peft/class_statistics.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace fedcl::peft {
namespace {

absl::Status CheckFlat(absl::Span<const float> flat, int64_t classes, int64_t dim,
                       absl::string_view what) {
  const auto bad = [&](const std::string& message) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", message));
  };
  if (static_cast<int64_t>(flat.size()) != classes * dim + classes) {
    return bad(absl::StrCat(flat.size(), " values; class_sums [", classes, ", ", dim,
                            "] and class_counts [", classes, "] hold ", classes * dim + classes));
  }
  const float* counts = flat.data() + classes * dim;
  for (int64_t c = 0; c < classes; ++c) {
    const double n = counts[c];
    if (!(n >= 0.0 && n <= kMaxClassCount && std::floor(n) == n)) {
      return bad(
          absl::StrCat("class_counts[", c, "] is ", n, "; a count is a whole number in [0, 2^24]"));
    }
    const float* sums = flat.data() + c * dim;
    for (int64_t k = 0; k < dim; ++k) {
      if (!std::isfinite(sums[k]))
        return bad(absl::StrCat("class_sums[", c, "] has a non-finite value"));
      if (n == 0.0 && sums[k] != 0.0f) {
        return bad(
            absl::StrCat("class_sums[", c, "] is not zero although class_counts[", c, "] is"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

nn::ParameterSet NewClassStatistics(absl::string_view name, int64_t classes, int64_t dim) {
  nn::ParameterSet set{std::string(name)};
  set.Add("class_sums", {classes, dim}, false);
  set.Add("class_counts", {classes}, false);
  return set;  // values start at zero
}

absl::Status CheckClassStatistics(const nn::ParameterSet& values, int64_t classes, int64_t dim) {
  const std::string what = absl::StrCat("class statistics '", values.name(), "'");
  if (values.num_tensors() != 2 || values.info(0).name != "class_sums" ||
      values.info(0).shape != nn::Shape{classes, dim} || values.info(1).name != "class_counts" ||
      values.info(1).shape != nn::Shape{classes}) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected class_sums [", classes, ", ",
                                                   dim, "] then class_counts [", classes, "]"));
  }
  return CheckFlat(absl::MakeConstSpan(values.values(0), values.num_values()), classes, dim, what);
}

absl::Status CheckClassStatisticsDelta(absl::Span<const float> delta, int64_t classes,
                                       int64_t dim) {
  return CheckFlat(delta, classes, dim, "a class-statistics delta");
}

}  // namespace fedcl::peft
