#include "proto/envelope.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "proto/little_endian.h"

namespace fedcl::proto {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'C', 'L', 'E', 'N', 'V'};

// Field offsets in the header; see the layout in envelope.h.
constexpr size_t kVersionOffset = 8;
constexpr size_t kKindOffset = 12;
constexpr size_t kLengthOffset = 16;
constexpr size_t kPayloadCrcOffset = 24;
constexpr size_t kHeaderCrcOffset = 28;
static_assert(kHeaderCrcOffset + 4 == kEnvelopeHeaderSize);

std::string Hex32(uint32_t value) { return absl::StrCat("0x", absl::Hex(value, absl::kZeroPad8)); }

void WriteHeader(PayloadKind kind, absl::string_view payload, char* header) {
  std::memcpy(header, kMagic, sizeof(kMagic));
  StoreLittleEndian32(kEnvelopeFormatVersion, header + kVersionOffset);
  StoreLittleEndian32(static_cast<uint32_t>(kind), header + kKindOffset);
  StoreLittleEndian64(payload.size(), header + kLengthOffset);
  StoreLittleEndian32(base::Crc32(payload), header + kPayloadCrcOffset);
  StoreLittleEndian32(base::Crc32(absl::string_view(header, kHeaderCrcOffset)),
                      header + kHeaderCrcOffset);
}

// DataLoss "<what> is corrupt: <problem>".
template <typename... Problem>
absl::Status Corrupt(absl::string_view what, const Problem&... problem) {
  return absl::DataLossError(absl::StrCat(what, " is corrupt: ", problem...));
}

// Checks magic, header checksum and version, the parts that say "this is an intact envelope
// header". The checksum comes before the version so that a damaged version field reads as
// damage (DataLoss), not as a file from a newer build; every format version keeps the header
// checksum where version 1 has it (envelope.h).
absl::Status CheckHeader(absl::string_view bytes, absl::string_view what) {
  if (bytes.size() < kEnvelopeHeaderSize) {
    return Corrupt(what, "truncated to ", bytes.size(), " bytes, shorter than the ",
                   kEnvelopeHeaderSize, "-byte header");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a fedcl envelope: it starts with \"",
                     absl::CHexEscape(bytes.substr(0, sizeof(kMagic))), "\", not \"",
                     absl::CHexEscape(absl::string_view(kMagic, sizeof(kMagic))), "\""));
  }
  uint32_t stored = LoadLittleEndian32(bytes.data() + kHeaderCrcOffset);
  uint32_t computed = base::Crc32(bytes.substr(0, kHeaderCrcOffset));
  if (stored != computed) {
    return Corrupt(what, "header checksum mismatch (stored ", Hex32(stored), ", computed ",
                   Hex32(computed), ")");
  }
  uint32_t version = LoadLittleEndian32(bytes.data() + kVersionOffset);
  if (version != kEnvelopeFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " has envelope format version ", version, " but this build reads only version ",
        kEnvelopeFormatVersion, " (the file is newer than this build, or damaged)"));
  }
  return absl::OkStatus();
}

// Checks a whole envelope and returns its payload.
absl::StatusOr<absl::string_view> CheckEnvelope(absl::string_view bytes, absl::string_view what,
                                                absl::string_view source_name,
                                                PayloadKind expected_kind) {
  FEDCL_RETURN_IF_ERROR(CheckHeader(bytes, what));
  auto kind = static_cast<PayloadKind>(LoadLittleEndian32(bytes.data() + kKindOffset));
  if (kind != expected_kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", source_name, "' holds the wrong kind of payload: ", PayloadKindName(kind), " (code ",
        static_cast<uint32_t>(kind), ") where ", PayloadKindName(expected_kind), " (code ",
        static_cast<uint32_t>(expected_kind), ") was expected"));
  }
  uint64_t length = LoadLittleEndian64(bytes.data() + kLengthOffset);
  absl::string_view payload = bytes.substr(kEnvelopeHeaderSize);
  if (length != payload.size()) {
    return Corrupt(what, "the header gives a payload of ", length, " bytes but ", payload.size(),
                   " follow it (", length > payload.size() ? "truncated" : "trailing bytes", ")");
  }
  uint32_t stored = LoadLittleEndian32(bytes.data() + kPayloadCrcOffset);
  uint32_t computed = base::Crc32(payload);
  if (stored != computed) {
    return Corrupt(what, "payload checksum mismatch (stored ", Hex32(stored), ", computed ",
                   Hex32(computed), ")");
  }
  return payload;
}

}  // namespace

std::string PayloadKindName(PayloadKind kind) {
  switch (kind) {
    case PayloadKind::kParameterSet:
      return "parameter set";
    case PayloadKind::kModelCheckpoint:
      return "model checkpoint";
    case PayloadKind::kModulePool:
      return "module pool";
    case PayloadKind::kClientState:
      return "client state";
    case PayloadKind::kDeviceState:
      return "device state";
  }
  return absl::StrCat("unknown payload kind ", static_cast<uint32_t>(kind));
}

absl::Status EncodeEnvelopeInto(PayloadKind kind, const google::protobuf::MessageLite& message,
                                std::string* bytes) {
  size_t size = message.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(message.GetTypeName(), " of ", size, " bytes is over protobuf's 2 GiB limit"));
  }
  if (!message.IsInitialized()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot serialize ", message.GetTypeName(), ": required fields are missing"));
  }
  bytes->resize(kEnvelopeHeaderSize + size);
  uint8_t* payload = reinterpret_cast<uint8_t*>(bytes->data()) + kEnvelopeHeaderSize;
  message.SerializeWithCachedSizesToArray(payload);  // the sizes ByteSizeLong just cached
  WriteHeader(kind, absl::string_view(*bytes).substr(kEnvelopeHeaderSize), bytes->data());
  return absl::OkStatus();
}

absl::StatusOr<std::string> EncodeEnvelope(PayloadKind kind,
                                           const google::protobuf::MessageLite& message) {
  std::string bytes;
  FEDCL_RETURN_IF_ERROR(EncodeEnvelopeInto(kind, message, &bytes));
  return bytes;
}

absl::Status DecodeEnvelope(absl::string_view bytes, absl::string_view source_name,
                            PayloadKind expected_kind, google::protobuf::MessageLite* message) {
  message->Clear();
  std::string what = absl::StrCat(PayloadKindName(expected_kind), " '", source_name, "'");
  FEDCL_ASSIGN_OR_RETURN(absl::string_view payload,
                         CheckEnvelope(bytes, what, source_name, expected_kind));
  if (payload.size() > static_cast<size_t>(INT_MAX)) {
    return Corrupt(what, "the payload has ", payload.size(), " bytes, over protobuf's 2 GiB limit");
  }
  if (!message->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    message->Clear();  // ParseFromArray may leave a partly parsed message behind.
    return Corrupt(what, "the payload does not parse as ", message->GetTypeName());
  }
  return absl::OkStatus();
}

absl::Status WriteEnvelope(base::FileSystem& fs, absl::string_view path, PayloadKind kind,
                           const google::protobuf::MessageLite& message,
                           base::FileSystem::Sync sync) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, EncodeEnvelope(kind, message));
  return fs.WriteFileAtomically(path, bytes, sync);
}

absl::Status WriteEnvelope(base::FileSystem& fs, absl::string_view path, PayloadKind kind,
                           const google::protobuf::MessageLite& message,
                           base::FileSystem::Sync sync, std::string* scratch) {
  FEDCL_RETURN_IF_ERROR(EncodeEnvelopeInto(kind, message, scratch));
  return fs.WriteFileAtomically(path, *scratch, sync);
}

absl::Status ReadEnvelope(const base::FileSystem& fs, absl::string_view path,
                          PayloadKind expected_kind, google::protobuf::MessageLite* message,
                          uint64_t max_bytes) {
  message->Clear();
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs.ReadFile(path, max_bytes));
  return DecodeEnvelope(bytes, path, expected_kind, message);
}

}  // namespace fedcl::proto
