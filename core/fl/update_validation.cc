#include "core/fl/update_validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/nn/tensor.h"

namespace fedcl::fl {

absl::Status ValidateModuleDelta(const ModuleDelta& delta, const nn::ParameterSet& module) {
  if (delta.layout.size() != static_cast<size_t>(module.num_tensors())) {
    return absl::InvalidArgumentError(absl::StrCat("module '", delta.name, "': delta has ",
                                                   delta.layout.size(), " tensors, the module ",
                                                   module.num_tensors()));
  }
  for (int t = 0; t < module.num_tensors(); ++t) {
    const nn::TensorInfo& want = module.info(t);
    const TensorSpec& got = delta.layout[t];
    if (got.name != want.name) {
      return absl::InvalidArgumentError(absl::StrCat("module '", delta.name, "': tensor ", t,
                                                     " is '", got.name, "', expected '", want.name,
                                                     "'"));
    }
    if (got.shape != want.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("module '", delta.name, "': tensor '", got.name, "' has shape ",
                       nn::ShapeToString(got.shape), ", expected ", nn::ShapeToString(want.shape)));
    }
  }
  if (static_cast<int64_t>(delta.values.size()) != module.num_values()) {
    return absl::InvalidArgumentError(absl::StrCat("module '", delta.name, "': delta has ",
                                                   delta.values.size(), " values, expected ",
                                                   module.num_values()));
  }
  return absl::OkStatus();
}

absl::Status FindNonFinite(const UpdateSubmission& update) {
  for (const ModuleDelta& delta : update.modules) {
    for (size_t i = 0; i < delta.values.size(); ++i) {
      if (!std::isfinite(delta.values[i])) {
        return absl::InvalidArgumentError(absl::StrCat("module '", delta.name, "': value ", i,
                                                       " is ", delta.values[i], " (not finite)"));
      }
    }
  }
  return absl::OkStatus();
}

double SquaredNorm(const UpdateSubmission& update) {
  // The norm decides the clipping factor, which is part of the fold weight, so its bits must not
  // depend on where the host's buffer happens to sit: eight lanes by index, summed in a fixed
  // order, rather than an address-aligned vector reduction.
  double lanes[8] = {};
  for (const ModuleDelta& delta : update.modules) {
    const float* v = delta.values.data();
    const size_t n = delta.values.size();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      for (int k = 0; k < 8; ++k) lanes[k] += static_cast<double>(v[i + k]) * v[i + k];
    }
    for (; i < n; ++i) lanes[i % 8] += static_cast<double>(v[i]) * v[i];
  }
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

}  // namespace fedcl::fl
