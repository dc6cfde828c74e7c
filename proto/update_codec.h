// SubmitUpdate's payload in the fedcl.v1 wire format, both halves: an UpdateHeader (who, which
// round, the training report, each module's name, base version, layout and codec, total_bytes
// and the CRC-32 of the bytes), then every module's delta in order: float32 little-endian bytes,
// or the payload of its codec (proto/compressed_payload.h) when the device compressed it.
//
//   device:  FEDCL_RETURN_IF_ERROR(EncodeUpdate(client, round, update, &header, &data));
//   server:  FEDCL_ASSIGN_OR_RETURN(UpdateLayout layout,
//                                   DecodeUpdateHeader(header, coordinator.Modules()));
//            ... receive layout.total_bytes bytes, check header.crc32() ...
//            if layout.compressed: FEDCL_RETURN_IF_ERROR(DecodeUpdatePayload(layout, bytes,
//            floats)) fl::UpdateSubmission s = SubmissionFromHeader(header, layout, floats);
//
// The server streams the bytes itself (submit_reactor.h: staged straight into float buffers,
// the CRC computed as they are copied); this file is what the bytes mean.
#ifndef FEDCL_PROTO_UPDATE_CODEC_H_
#define FEDCL_PROTO_UPDATE_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/fl/compression.h"
#include "core/fl/coordinator.h"
#include "core/fl/round_types.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace fedcl::proto {

// ---- The device's half ----

// The UpdateHeader and the delta bytes of `update` (every module's values in order, float32
// little-endian, or its `compressed` payload where set), with total_bytes and crc32 set.
// InvalidArgument if a module's values do not match its layout's element count, or the update has
// no modules.
absl::Status EncodeUpdate(fl::ClientId client, int64_t round, const fl::LocalUpdate& update,
                          v1::UpdateHeader* header, std::string* data);

// ---- The server's half ----

// What a checked header says the bytes hold: each module's layout, value count, codec and bytes,
// in order.
struct UpdateLayout {
  std::vector<std::vector<fl::TensorSpec>> layouts;
  std::vector<int64_t> num_values;
  std::vector<fl::CompressionSpec> compression;
  std::vector<int64_t> payload_bytes;
  int64_t total_values = 0;  // Σ num_values: the floats the update decodes to
  int64_t total_bytes = 0;   // Σ payload_bytes: what travels
  bool compressed = false;   // some module is not float32: the bytes need DecodeUpdatePayload
};

// Checks `header` against the modules the server pools, before any byte is accepted: the
// training report (fl::ValidateTrainingReport), at least one module, each layout decodes and its
// element count neither overflows nor exceeds what the pool could take (ResourceExhausted: every
// pooled module once), each names a pooled module with a matching layout
// (fl::ValidateDeltaLayout), its codec parses and its payload_bytes are what that codec can take
// for its values (any codec is accepted, whatever the work asked), and total_bytes is their sum.
// InvalidArgument otherwise, naming "modules[i]" and echoing names truncated (fl::EchoInput).
absl::StatusOr<UpdateLayout> DecodeUpdateHeader(const v1::UpdateHeader& header,
                                                absl::Span<const fl::ModuleSnapshot> pool);

// Decodes the update's bytes (layout.total_bytes of them) into `values` (layout.total_values
// floats, in the header's module order), checking every payload (ParseCompressedPayload, then
// fl::Decompress: sizes, indices, scales, finiteness of what decodes). InvalidArgument naming
// "modules[i]" on the first bad payload; `values` may then be partly written. `bytes` and
// `values` must not overlap.
absl::Status DecodeUpdatePayload(const UpdateLayout& layout, absl::string_view bytes,
                                 absl::Span<float> values);

// The submission of a decoded header over its values (layout.total_values floats, in the header's
// module order; the submission's module values point into `values`).
fl::UpdateSubmission SubmissionFromHeader(const v1::UpdateHeader& header,
                                          const UpdateLayout& layout, absl::Span<float> values);

// The server reads each data chunk after the header raw, as the wire form of
// UpdateChunk{data: ...}: tag 0x12 (field 2, length-delimited), the length as a varint, then the
// bytes. Given the chunk's first bytes (at least kDataChunkPrefixBytes of them, or the whole
// chunk if shorter) and its length, returns where the data starts. InvalidArgument unless the
// chunk is exactly one data field: another tag, an unterminated or over-long varint, or a length
// other than what follows it.
inline constexpr size_t kDataChunkPrefixBytes = 11;
absl::StatusOr<size_t> DataChunkOffset(absl::string_view first_bytes, uint64_t chunk_length);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_UPDATE_CODEC_H_
