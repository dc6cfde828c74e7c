// Checks an update's module deltas before anything is folded: every check here runs on data only,
// so a refused update changes nothing.
#ifndef FEDCL_CORE_FL_UPDATE_VALIDATION_H_
#define FEDCL_CORE_FL_UPDATE_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/fl/round_types.h"
#include "core/nn/parameter_set.h"

namespace fedcl::fl {

// The layout of one module's delta against the module it updates: the same tensor names and
// shapes in the same order, and as many values as the module has. InvalidArgument naming the
// module, the tensor and the problem. Values are checked by CheckValues.
absl::Status ValidateModuleDelta(const ModuleDelta& delta, const nn::ParameterSet& module);

// Sum of squares over all the update's deltas, in double. Not finite if and only if some value
// is not (squares of finite floats cannot overflow a double), so one pass serves both checks.
double SquaredNorm(const UpdateSubmission& update);

// InvalidArgument naming the module and index of the first non-finite value (OK if none).
absl::Status FindNonFinite(const UpdateSubmission& update);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_UPDATE_VALIDATION_H_
