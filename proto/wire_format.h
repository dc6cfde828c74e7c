// The devices' half of the fedcl.v1 wire format: reassembling chunked downloads, decoding the
// server's replies into core types, and encoding an update for SubmitUpdate.
//
// Downloads (DownloadBackbone, DownloadModule) arrive as a stream of Chunk messages; the first
// carries the payload's total size and CRC-32. ChunkAssembler accepts them in order and checks
// everything a damaged or truncated transfer could get wrong:
//
//   ChunkAssembler assembler("backbone", options.max_download_bytes);
//   while (reader->Read(&chunk)) FEDCL_RETURN_IF_ERROR(assembler.Add(chunk));
//   FEDCL_ASSIGN_OR_RETURN(std::string bytes, assembler.Finish());
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
#include "core/fl/coordinator.h"
#include "core/fl/client_model.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace fedcl::proto {

// Reassembles one chunked download. Not thread-safe.
class ChunkAssembler {
 public:
  // `what` names the payload in error messages ("backbone", "module 'head' version 3"); a
  // payload announcing more than `max_bytes` is refused.
  ChunkAssembler(std::string what, int64_t max_bytes);

  // Accepts the next chunk. The first must start at offset 0 and announce the total size; each
  // later one must start where the previous ended. Errors, after which every call fails:
  //   DataLoss            a first chunk not at offset 0, a negative total, a gap or overlap
  //                       (offset other than the bytes received so far), more bytes than
  //                       announced, or a later chunk announcing a different total.
  //   FailedPrecondition  a total above `max_bytes` (raise the client's limit; retrying is
  //                       pointless).
  absl::Status Add(const v1::Chunk& chunk);

  // The payload, once the stream has ended. DataLoss if no chunk arrived, fewer bytes than
  // announced arrived, or the CRC-32 does not match; or the first error Add reported.
  absl::StatusOr<std::string> Finish();

  int64_t received_bytes() const { return static_cast<int64_t>(bytes_.size()); }

 private:
  absl::Status Fail(absl::Status status);

  const std::string what_;
  const int64_t max_bytes_;
  bool started_ = false;
  int64_t total_bytes_ = 0;
  uint32_t expected_crc_ = 0;
  std::string bytes_;
  absl::Status error_;
};

// ---- Decoding the server's replies ----------------------------------------------------------

// InvalidArgument for a model config that does not validate.
absl::StatusOr<device::ServerInfo> ServerInfoFromProto(const v1::ServerInfo& message);

// InvalidArgument for an unknown action, a recipe that does not validate, or a module descriptor
// that does not decode (naming the module).
absl::StatusOr<fl::WorkAssignment> WorkFromProto(const v1::GetWorkResponse& message);

// Parses a downloaded ModulePayload, which must be module `name` at `version`. DataLoss if the
// bytes do not parse; InvalidArgument for a descriptor or values that do not decode (values must
// be finite) or a module other than the one asked for.
absl::StatusOr<device::DownloadedModule> ParseModulePayload(absl::string_view bytes, absl::string_view name,
                                                    int64_t version);

// ---- Encoding an update -----------------------------------------------------------------------

// The UpdateHeader and the delta bytes (every module's values in order, float32 little-endian)
// of `update`, with total_bytes and crc32 set. InvalidArgument if a module's values do not match
// its layout's element count, or the update has no modules.
absl::Status EncodeUpdate(fl::ClientId client, int64_t round, const fl::LocalUpdate& update,
                          v1::UpdateHeader* header, std::string* data);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_WIRE_FORMAT_H_
