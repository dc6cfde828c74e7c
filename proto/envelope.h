// A durable, checksummed container for one serialized protobuf message.
//
// Checkpoints and other state files are written as an envelope so that a reader can tell a good
// file from a torn, truncated, bit-rotted or foreign one, and never mistakes one kind of file for
// another. The same bytes can travel over the network, so the in-memory forms are public too:
//
//   v1::ParameterSet message;
//   proto::ToProto(model, &message);
//   FEDCL_RETURN_IF_ERROR(
//       proto::WriteEnvelope(fs, "/state/model.ckpt", proto::PayloadKind::kParameterSet, message));
//   ...
//   FEDCL_RETURN_IF_ERROR(proto::ReadEnvelope(fs, "/state/model.ckpt",
//                                             proto::PayloadKind::kParameterSet, &message,
//                                             /*max_bytes=*/uint64_t{1} << 30));
//
// Layout (all integers little-endian), a 32-byte header followed by the payload:
//
//   offset  size  field
//        0     8  magic "FEDCLENV"
//        8     4  format version, kEnvelopeFormatVersion
//       12     4  payload kind (PayloadKind)
//       16     8  payload length in bytes
//       24     4  CRC-32 (zlib/IEEE) of the payload
//       28     4  CRC-32 of header bytes 0..27
//       32     -  payload: the serialized message, exactly `payload length` bytes
//
// Every format version keeps the magic and this header CRC where they are, so a reader checks, in
// order: the header is complete, the magic, the header CRC, the version, the kind, the length
// (neither truncated nor followed by trailing bytes), the payload CRC, and that the payload parses
// as the expected message type. Error codes:
//
//   DataLoss            the bytes claim to be an envelope and are damaged: shorter than the
//                       header, header or payload checksum mismatch, wrong length, or a payload
//                       that does not parse. A reader can fall back to an older copy.
//   InvalidArgument     not what was asked for: no envelope magic, or a different payload kind.
//   FailedPrecondition  an intact-looking envelope of a format version this build cannot read.
//
// Every message names the source (the path) and the problem, e.g.
// "parameter set '/state/model.ckpt' is corrupt: payload checksum mismatch (stored 0x1c291ca3,
// computed 0x9ae0daaf)". On any error the output message is left cleared, never partly parsed.
//
// All functions are thread-safe; concurrent writes to one path are serialized by the FileSystem's
// atomic rename (the last one wins).
#ifndef FEDCL_PROTO_ENVELOPE_H_
#define FEDCL_PROTO_ENVELOPE_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "google/protobuf/message_lite.h"

namespace fedcl::proto {

// What an envelope holds. Stored in the header so that, say, a parameter set is never loaded as
// server state. Codes are permanent: never renumber or reuse one; add new kinds at the end.
enum class PayloadKind : uint32_t {
  // A fedcl.v1.ParameterSet on its own: a model's or a PET module's weights.
  kParameterSet = 1,
  // A fedcl.v1.ModelCheckpoint: config, weights, PET modules and metadata (proto/checkpoint.h).
  kModelCheckpoint = 2,
  // A fedcl.v1.ModulePoolState: fedcl-server's module pool after a round (server/).
  kModulePool = 3,
  // A fedcl.v1.ClientState: fedcl-client's durable state in its state directory (client/).
  kClientState = 4,
  // A fedcl.v1.DeviceState: the edge SDK's durable state in its storage directory (client/sdk).
  kDeviceState = 5,
};

// Human-readable name of a kind, e.g. "parameter set"; "unknown payload kind 7" for an unknown
// code.
std::string PayloadKindName(PayloadKind kind);

inline constexpr size_t kEnvelopeHeaderSize = 32;
inline constexpr uint32_t kEnvelopeFormatVersion = 1;

// Serializes `message` into an envelope of the given kind. ResourceExhausted if the message is
// too large for protobuf to serialize (2 GiB); InvalidArgument if it lacks required fields.
absl::StatusOr<std::string> EncodeEnvelope(PayloadKind kind,
                                           const google::protobuf::MessageLite& message);

// The same into `*bytes`, whose capacity is reused: a caller that writes a large message
// repeatedly (the server's pool file, every round) keeps one buffer instead of mapping and
// faulting in a fresh one each time. `*bytes` is replaced; on error its contents are unspecified.
absl::Status EncodeEnvelopeInto(PayloadKind kind, const google::protobuf::MessageLite& message,
                                std::string* bytes);

// Parses `bytes`, an envelope that must hold `expected_kind`, into `*message` (cleared first).
// `source_name` (a path, or e.g. "upload from client 17") only appears in error messages. Error
// codes are listed at the top of this file. `message` must not be null.
absl::Status DecodeEnvelope(absl::string_view bytes, absl::string_view source_name,
                            PayloadKind expected_kind, google::protobuf::MessageLite* message);

// Encodes `message` and replaces the file at `path` atomically through
// FileSystem::WriteFileAtomically: after a crash or a failed write the previous file, if any, is
// still there and readable. Errors from encoding or from the file system are passed through.
// `sync` chooses durable (fsync, the default) or crash-safe writes (base/filesystem.h).
absl::Status WriteEnvelope(base::FileSystem& fs, absl::string_view path, PayloadKind kind,
                           const google::protobuf::MessageLite& message,
                           base::FileSystem::Sync sync = base::FileSystem::Sync::kDurable);
// The same, encoding through `*scratch` (EncodeEnvelopeInto).
absl::Status WriteEnvelope(base::FileSystem& fs, absl::string_view path, PayloadKind kind,
                           const google::protobuf::MessageLite& message,
                           base::FileSystem::Sync sync, std::string* scratch);

// Reads the envelope at `path` into `*message`, as DecodeEnvelope does. Refuses, before reading,
// a file larger than `max_bytes` (header included) with ResourceExhausted. File system errors
// pass through: NotFound for a missing file, and so on. `message` must not be null.
absl::Status ReadEnvelope(const base::FileSystem& fs, absl::string_view path,
                          PayloadKind expected_kind, google::protobuf::MessageLite* message,
                          uint64_t max_bytes);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_ENVELOPE_H_
