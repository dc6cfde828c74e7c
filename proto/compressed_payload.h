// The bytes of one compressed module delta in a SubmitUpdate's data (core/fl/compression.h says
// what the codecs compute; this file says how their output travels). Little-endian throughout,
// parts in this order, d = the module's values, B = the spec's block size:
//
//   float32  d float32
//   float16  d binary16 (uint16)
//   int8     ⌈d/B⌉ float32 scales, then d int8
//   topk     k = TopKCount(spec, d) index gaps as unsigned LEB128 varints (the first is the first
//            index, each next the difference to the previous), then ⌈k/B⌉ float32 scales, then
//            k int8
//
// so a payload's size is exactly fl::CompressedValues::bytes(). The server learns each module's
// codec and payload size from the UpdateHeader (ModuleDelta.compression, payload_bytes) and checks
// them before any byte arrives (fl::PayloadBytesBounds); the decoder then checks that the bytes
// parse exactly, and fl::Decompress what they mean.
#ifndef FEDCL_PROTO_COMPRESSED_PAYLOAD_H_
#define FEDCL_PROTO_COMPRESSED_PAYLOAD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/fl/compression.h"

namespace fedcl::proto {

// Appends the payload of `compressed` to `out`: compressed.bytes() bytes.
void AppendCompressedPayload(const fl::CompressedValues& compressed, std::string* out);

// Parses a payload of a delta of `size` values compressed with `spec` (valid). InvalidArgument if
// the bytes are not exactly one such payload: too few, left over, a varint longer than 5 bytes or
// beyond 2^32 − 1. Gaps are summed without overflow; whether indices stay in range, scales are
// finite and so on is fl::Decompress's to check.
absl::StatusOr<fl::CompressedValues> ParseCompressedPayload(const fl::CompressionSpec& spec,
                                                            int64_t size, absl::string_view bytes);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_COMPRESSED_PAYLOAD_H_
