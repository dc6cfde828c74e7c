// Conversion between nn::ParameterSet and its wire/checkpoint message fedcl.v1.ParameterSet.
//
// Encoding never fails. Decoding treats the message as untrusted input (it may come from any
// device, or from a damaged file) and validates all of it before building or writing anything:
//
//   v1::ParameterSet message;
//   proto::ToProto(module, &message);                       // to send or checkpoint
//
//   FEDCL_ASSIGN_OR_RETURN(nn::ParameterSet loaded, proto::FromProto(message));
//
//   // A received update must match the server's layout exactly; `delta` keeps its own flags.
//   FEDCL_RETURN_IF_ERROR(proto::CopyValuesFromProto(request.update(), &delta));
//
// Values are float32, encoded little-endian whatever the host byte order. Only values and
// trainable flags travel; gradients are never encoded.
//
// Every decoding error is InvalidArgument and names the parameter set, the tensor and the
// problem. All functions are thread-safe on distinct outputs.
#ifndef FEDCL_PROTO_TENSOR_CONVERT_H_
#define FEDCL_PROTO_TENSOR_CONVERT_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/nn/parameter_set.h"
#include "proto/fedcl/v1/tensor.pb.h"

namespace fedcl::proto {

struct DecodeOptions {
  // Refuse any NaN or infinite value (InvalidArgument naming the tensor and the element). Updates
  // received from devices must be finite, so this is on by default; turn it off only to inspect
  // a diverged checkpoint, in which case NaN payload bits are preserved exactly.
  bool require_finite = true;
};

// Replaces the contents of `*message` with `set`: its name, and for each tensor, in order, the
// name, shape, DTYPE_FLOAT32, the values as little-endian bytes and the trainable flag.
// `message` must not be null.
void ToProto(const nn::ParameterSet& set, v1::ParameterSet* message);

// Builds a ParameterSet from `message`, with zero gradients. InvalidArgument if any tensor has an
// empty or duplicate name, an unset or unsupported dtype, a dimension that is zero or negative,
// an element count that overflows, a data length other than element count × 4, or (with
// `require_finite`) a non-finite value. An empty shape is a scalar, as in nn::ParameterSet.
// Memory allocated is bounded by the size of `message`.
absl::StatusOr<nn::ParameterSet> FromProto(const v1::ParameterSet& message,
                                           const DecodeOptions& options = {});

// Overwrites the values of `*into` with those of `message`, which must be valid (as FromProto
// checks) and have the same layout as `*into`: the same number of tensors with the same names
// and shapes, in the same order. Everything is checked before the first value is written, so on
// error `*into` is untouched. The set's name, its trainable flags and its gradients are never
// changed; the message's set name and trainable flags are ignored. `into` must not be null.
absl::Status CopyValuesFromProto(const v1::ParameterSet& message, nn::ParameterSet* into,
                                 const DecodeOptions& options = {});

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_TENSOR_CONVERT_H_
