// Conversion between fedcl.v1 federation messages and core/fl types, shared by fedcl-server,
// fedcl-client and the simulator's workers.
#ifndef FEDCL_PROTO_FEDERATION_CONVERT_H_
#define FEDCL_PROTO_FEDERATION_CONVERT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "core/fl/coordinator.h"
#include "core/fl/round_types.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace fedcl::proto {

void ToProto(const fl::Recipe& recipe, v1::Recipe* message);
// InvalidArgument if the recipe does not validate.
absl::StatusOr<fl::Recipe> FromProto(const v1::Recipe& message);

void ToProto(const fl::ModuleSpec& spec, v1::ModuleDescriptor* message);
absl::StatusOr<fl::ModuleSpec> SpecFromProto(const v1::ModuleDescriptor& message);

void ToProto(const fl::WorkAssignment& work, v1::GetWorkResponse* message);

// A ProposeModule request as the coordinator takes it. InvalidArgument naming what is malformed
// (role, tensors, non-finite values); the coordinator checks everything else.
absl::StatusOr<fl::ModuleProposal> ProposalFromProto(const v1::ProposeModuleRequest& message);
void ToProto(const fl::ModuleProposal& proposal, v1::ProposeModuleRequest* message);

// The tensor layout of a ParameterSet message (names and shapes; dtype must be float32).
// InvalidArgument naming the tensor otherwise.
absl::StatusOr<std::vector<fl::TensorSpec>> LayoutFromProto(const v1::ParameterSet& layout);
void LayoutToProto(const std::vector<fl::TensorSpec>& layout, v1::ParameterSet* message);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_FEDERATION_CONVERT_H_
