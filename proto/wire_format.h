// Decoding the server's replies into core types on the device (ServerInfo, GetWork, a module's
// payload). Chunked transfers are in chunks.h, SubmitUpdate's header and bytes in
// update_codec.h.
//
// Everything that comes from the server is treated as untrusted: decoding validates before it
// builds anything. All functions are thread-safe on distinct arguments.
#ifndef FEDCL_PROTO_WIRE_FORMAT_H_
#define FEDCL_PROTO_WIRE_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/device/federation_port.h"
#include "core/fl/client_model.h"
#include "core/fl/coordinator.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace fedcl::proto {

// ---- Decoding the server's replies ----------------------------------------------------------

// InvalidArgument for a model config that does not validate.
absl::StatusOr<device::ServerInfo> ServerInfoFromProto(const v1::ServerInfo& message);

// InvalidArgument for an unknown action, a recipe that does not validate, or a module descriptor
// that does not decode (naming the module).
absl::StatusOr<fl::WorkAssignment> WorkFromProto(const v1::GetWorkResponse& message);

// Parses a downloaded ModulePayload, which must be module `name` at `version`. DataLoss if the
// bytes do not parse; InvalidArgument for a descriptor or values that do not decode (values must
// be finite) or a module other than the one asked for.
absl::StatusOr<device::DownloadedModule> ParseModulePayload(absl::string_view bytes,
                                                            absl::string_view name,
                                                            int64_t version);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_WIRE_FORMAT_H_
