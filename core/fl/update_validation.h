// Checks an update's module deltas and training report before anything is folded: every check here
// runs on data only, so a refused update changes nothing. A host runs the header checks
// (LayoutNumValues, ValidateDeltaLayout, ValidateTrainingReport) as soon as an update's header
// arrives, before it waits for an upload slot or allocates anything for the values.
//
// Every message that repeats what a client sent (a module or tensor name) passes it through
// EchoInput, so that an error about a 40 kB name is a short message with the specific code, not
// one too large for the caller's metadata limit.
#ifndef FEDCL_CORE_FL_UPDATE_VALIDATION_H_
#define FEDCL_CORE_FL_UPDATE_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/fl/round_types.h"
#include "core/nn/parameter_set.h"

namespace fedcl::fl {

// Client-supplied text as it may appear in a status message: unchanged up to `max_bytes` bytes,
// else its first `max_bytes` bytes (cut at a UTF-8 character boundary) followed by
// "… (N bytes)". E.g. a 40,000-byte name echoes as "aaaa…aaaa… (40000 bytes)".
inline constexpr size_t kEchoBytes = 64;
std::string EchoInput(absl::string_view text, size_t max_bytes = kEchoBytes);

// Bounds of an update's training report (UpdateHeader num_samples, local_steps, loss). Far above
// anything a device does in one round, and small enough that a round's sums (samples, loss ×
// samples) stay exact or finite whatever the number of participants.
inline constexpr int64_t kMaxNumSamples = int64_t{1} << 31;  // samples trained on, in [0, 2^31]
inline constexpr int64_t kMaxLocalSteps = int64_t{1} << 31;  // optimizer steps, in [0, 2^31]
inline constexpr double kMaxAbsLoss = 1e9;                   // mean loss, finite, |loss| <= 1e9

// InvalidArgument naming the field ("num_samples", "local_steps" or "loss") and its bounds if one
// is out of them; a NaN or infinite loss is refused.
absl::Status ValidateTrainingReport(int64_t num_samples, int64_t local_steps, double loss);

// The number of values a delta of `layout` holds, computed without overflow: InvalidArgument
// naming the tensor if a dimension is not positive or the count exceeds 2^62 values.
absl::StatusOr<int64_t> LayoutNumValues(absl::Span<const TensorSpec> layout);

// A delta's layout against the module it updates (named `module_name` in messages): the same
// tensor names and shapes in the same order. InvalidArgument naming the module, the tensor and the
// problem. Compares shapes only, so it is safe on any layout, however large its counts.
absl::Status ValidateDeltaLayout(absl::string_view module_name, absl::Span<const TensorSpec> layout,
                                 const nn::ParameterSet& module);

// The layout of one module's delta against the module it updates (ValidateDeltaLayout), and as
// many values as the module has. InvalidArgument naming the module, the tensor and the problem.
// Values are checked by FindNonFinite and SquaredNorm.
absl::Status ValidateModuleDelta(const ModuleDelta& delta, const nn::ParameterSet& module);

// Sum of squares over all the update's deltas, in double. Not finite if and only if some value
// is not (squares of finite floats cannot overflow a double), so one pass serves both checks.
// With `largest`, the same pass also gives each delta's largest |value| (parallel to
// update.modules; meaningful when the sum is finite). Modules marked in `skip` (parallel to
// update.modules) stay out of the sum unless they hold a non-finite value.
double SquaredNorm(const UpdateSubmission& update, std::vector<float>* largest = nullptr,
                   const std::vector<bool>* skip = nullptr);

// InvalidArgument naming the module and index of the first non-finite value (OK if none).
absl::Status FindNonFinite(const UpdateSubmission& update);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_UPDATE_VALIDATION_H_
