// Checks an update's module deltas before anything is folded: every check here runs on data only,
// so a refused update changes nothing.
#ifndef FEDCL_CORE_FL_UPDATE_VALIDATION_H_
#define FEDCL_CORE_FL_UPDATE_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/fl/round_types.h"
#include "core/nn/parameter_set.h"

namespace fedcl::fl {

// Layout and values of one module's delta against the module it updates: the same tensor names
// and shapes in the same order, as many values as the module has, and every value finite.
// InvalidArgument naming the module, the tensor and the problem.
absl::Status ValidateModuleDelta(const ModuleDelta& delta, const nn::ParameterSet& module);

// Sum of squares over all the update's deltas, in double.
double SquaredNorm(const UpdateSubmission& update);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_UPDATE_VALIDATION_H_
