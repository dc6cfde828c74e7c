#include "proto/envelope.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/memory_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/fedcl/v1/tensor.pb.h"

namespace fedcl::proto {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();
constexpr char kPath[] = "/state/model.ckpt";

v1::ParameterSet MakeMessage() {
  v1::ParameterSet message;
  message.set_name("backbone");
  for (int i = 0; i < 3; ++i) {
    v1::Tensor* tensor = message.add_tensors();
    tensor->set_name(absl::StrCat("layer", i));
    tensor->add_shape(2);
    tensor->set_dtype(v1::DTYPE_FLOAT32);
    tensor->set_data(std::string(8, static_cast<char>('a' + i)));
    tensor->set_trainable(i % 2 == 0);
  }
  return message;
}

std::string Encode(const v1::ParameterSet& message) {
  absl::StatusOr<std::string> bytes = EncodeEnvelope(PayloadKind::kParameterSet, message);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

std::string Le32(uint32_t value) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (8 * i));
  return out;
}

std::string Le64(uint64_t value) { return Le32(static_cast<uint32_t>(value)) + Le32(value >> 32); }

uint32_t ZlibCrc(const std::string& bytes) {
  return crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
}

// An envelope assembled by hand from the layout documented in envelope.h, with valid checksums.
std::string HandMadeEnvelope(uint32_t version, uint32_t kind, const std::string& payload) {
  std::string header =
      "FEDCLENV" + Le32(version) + Le32(kind) + Le64(payload.size()) + Le32(ZlibCrc(payload));
  return header + Le32(ZlibCrc(header)) + payload;
}

// Decoding `bytes` fails with `code`, mentions `path` and `part`, and leaves the message empty.
void ExpectDecodeFails(const std::string& bytes, absl::StatusCode code, const std::string& part) {
  v1::ParameterSet message = MakeMessage();  // must be cleared, not left as it was
  absl::Status status = DecodeEnvelope(bytes, kPath, PayloadKind::kParameterSet, &message);
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(status.message(), HasSubstr(kPath));
  EXPECT_THAT(status.message(), HasSubstr(part));
  EXPECT_EQ(message.ByteSizeLong(), 0u);
}

TEST(EnvelopeTest, EncodingIntoAReusedBufferGivesTheSameBytes) {
  const v1::ParameterSet message = MakeMessage();
  // A buffer left over from a longer message, and from a shorter one.
  for (const std::string& leftover : {std::string(4096, 'x'), std::string(3, 'y')}) {
    std::string bytes = leftover;
    ASSERT_TRUE(EncodeEnvelopeInto(PayloadKind::kParameterSet, message, &bytes).ok());
    EXPECT_EQ(bytes, HandMadeEnvelope(1, static_cast<uint32_t>(PayloadKind::kParameterSet),
                                      message.SerializeAsString()));
  }
  base::MemoryFileSystem fs;
  std::string scratch(100, 'z');
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kParameterSet, message,
                            base::FileSystem::Sync::kDurable, &scratch)
                  .ok());
  v1::ParameterSet read;
  ASSERT_TRUE(ReadEnvelope(fs, kPath, PayloadKind::kParameterSet, &read, kNoLimit).ok());
  EXPECT_EQ(read.SerializeAsString(), message.SerializeAsString());
}

TEST(EnvelopeTest, EncodingFollowsTheDocumentedLayout) {
  v1::ParameterSet message = MakeMessage();
  std::string expected = HandMadeEnvelope(1, 1, message.SerializeAsString());
  EXPECT_EQ(Encode(message), expected);
  EXPECT_EQ(expected.size(), kEnvelopeHeaderSize + message.ByteSizeLong());
}

TEST(EnvelopeTest, InMemoryRoundTripPreservesTheMessage) {
  v1::ParameterSet original = MakeMessage();
  v1::ParameterSet decoded;
  ASSERT_TRUE(DecodeEnvelope(Encode(original), "mem", PayloadKind::kParameterSet, &decoded).ok());
  EXPECT_EQ(decoded.SerializeAsString(), original.SerializeAsString());
}

TEST(EnvelopeTest, EmptyMessageRoundTrips) {
  std::string bytes = Encode(v1::ParameterSet());
  EXPECT_EQ(bytes.size(), kEnvelopeHeaderSize);
  v1::ParameterSet decoded = MakeMessage();
  ASSERT_TRUE(DecodeEnvelope(bytes, "mem", PayloadKind::kParameterSet, &decoded).ok());
  EXPECT_EQ(decoded.ByteSizeLong(), 0u);
}

TEST(EnvelopeTest, RoundTripThroughMemoryFileSystem) {
  base::MemoryFileSystem fs;
  v1::ParameterSet original = MakeMessage();
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kParameterSet, original).ok());
  v1::ParameterSet read;
  absl::Status status = ReadEnvelope(fs, kPath, PayloadKind::kParameterSet, &read, kNoLimit);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(read.SerializeAsString(), original.SerializeAsString());
}

TEST(EnvelopeTest, RoundTripThroughRealFileSystem) {
  char pattern[] = "/tmp/fedcl_envelope_test_XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  std::string dir = pattern;
  base::FileSystem& fs = base::FileSystem::Default();
  std::string path = base::JoinPath(dir, "model.ckpt");
  v1::ParameterSet original = MakeMessage();
  ASSERT_TRUE(WriteEnvelope(fs, path, PayloadKind::kParameterSet, original).ok());
  v1::ParameterSet read;
  absl::Status status = ReadEnvelope(fs, path, PayloadKind::kParameterSet, &read, kNoLimit);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(read.SerializeAsString(), original.SerializeAsString());
  std::system(("rm -rf " + dir).c_str());
}

TEST(EnvelopeTest, MissingFileIsNotFound) {
  base::MemoryFileSystem fs;
  v1::ParameterSet read = MakeMessage();
  absl::Status status = ReadEnvelope(fs, kPath, PayloadKind::kParameterSet, &read, kNoLimit);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(kPath));
  EXPECT_EQ(read.ByteSizeLong(), 0u);
}

TEST(EnvelopeTest, FileOverTheLimitIsRefused) {
  base::MemoryFileSystem fs;
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kParameterSet, MakeMessage()).ok());
  uint64_t size = fs.ReadFile(kPath)->size();
  v1::ParameterSet read;
  EXPECT_EQ(ReadEnvelope(fs, kPath, PayloadKind::kParameterSet, &read, size - 1).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(ReadEnvelope(fs, kPath, PayloadKind::kParameterSet, &read, size).ok());
}

TEST(EnvelopeTest, FailedAtomicWriteLeavesThePreviousFileReadable) {
  base::MemoryFileSystem fs;
  v1::ParameterSet first = MakeMessage();
  ASSERT_TRUE(WriteEnvelope(fs, kPath, PayloadKind::kParameterSet, first).ok());
  v1::ParameterSet second = MakeMessage();
  second.set_name("newer");
  fs.FailNextWrites(1, absl::ResourceExhaustedError("disk full"));
  EXPECT_EQ(WriteEnvelope(fs, kPath, PayloadKind::kParameterSet, second).code(),
            absl::StatusCode::kResourceExhausted);
  v1::ParameterSet read;
  ASSERT_TRUE(ReadEnvelope(fs, kPath, PayloadKind::kParameterSet, &read, kNoLimit).ok());
  EXPECT_EQ(read.name(), "backbone");
}

TEST(EnvelopeTest, FlippedPayloadByteFailsChecksum) {
  std::string bytes = Encode(MakeMessage());
  bytes[kEnvelopeHeaderSize + 5] ^= 0x10;
  ExpectDecodeFails(bytes, absl::StatusCode::kDataLoss, "is corrupt: payload checksum mismatch");
  v1::ParameterSet message;
  absl::Status status = DecodeEnvelope(bytes, kPath, PayloadKind::kParameterSet, &message);
  EXPECT_THAT(std::string(status.message()),
              ::testing::ContainsRegex("stored 0x[0-9a-f]{8}, computed 0x"));
}

TEST(EnvelopeTest, FlippedHeaderByteFailsHeaderChecksum) {
  std::string bytes = Encode(MakeMessage());
  bytes[12] ^= 0x02;  // the kind field: would otherwise read as another kind
  ExpectDecodeFails(bytes, absl::StatusCode::kDataLoss, "header checksum mismatch");
}

TEST(EnvelopeTest, FileShorterThanTheHeaderIsTruncated) {
  ExpectDecodeFails("", absl::StatusCode::kDataLoss, "truncated to 0 bytes");
  ExpectDecodeFails(Encode(MakeMessage()).substr(0, 20), absl::StatusCode::kDataLoss,
                    "truncated to 20 bytes");
}

TEST(EnvelopeTest, MissingPayloadBytesAreReportedAsTruncation) {
  std::string bytes = Encode(MakeMessage());
  bytes.pop_back();
  ExpectDecodeFails(bytes, absl::StatusCode::kDataLoss, "(truncated)");
}

TEST(EnvelopeTest, TrailingBytesAreRefused) {
  ExpectDecodeFails(Encode(MakeMessage()) + "x", absl::StatusCode::kDataLoss, "(trailing bytes)");
}

TEST(EnvelopeTest, ForeignFileIsNotAnEnvelope) {
  std::string bytes = Encode(MakeMessage());
  bytes.replace(0, 8, "\x89PNG\r\n\x1a\n");
  ExpectDecodeFails(bytes, absl::StatusCode::kInvalidArgument, "is not a fedcl envelope");
}

TEST(EnvelopeTest, NewerFormatVersionIsFailedPrecondition) {
  std::string bytes = HandMadeEnvelope(2, 1, MakeMessage().SerializeAsString());
  ExpectDecodeFails(bytes, absl::StatusCode::kFailedPrecondition, "format version 2");
}

TEST(EnvelopeTest, WrongPayloadKindIsRefused) {
  absl::StatusOr<std::string> bytes = EncodeEnvelope(static_cast<PayloadKind>(7), MakeMessage());
  ASSERT_TRUE(bytes.ok());
  ExpectDecodeFails(*bytes, absl::StatusCode::kInvalidArgument,
                    "unknown payload kind 7 (code 7) where parameter set (code 1) was expected");
}

TEST(EnvelopeTest, PayloadThatDoesNotParseIsDataLoss) {
  // Valid checksums around bytes that are not a protobuf (a truncated varint).
  std::string bytes = HandMadeEnvelope(1, 1, std::string("\x08\xff\xff", 3));
  ExpectDecodeFails(bytes, absl::StatusCode::kDataLoss, "does not parse as fedcl.v1.ParameterSet");
}

}  // namespace
}  // namespace fedcl::proto
