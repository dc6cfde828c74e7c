#include "core/data/gzip.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/idx_test_util.h"

namespace fedcl::data {
namespace {

using ::testing::HasSubstr;
using testutil::Gzip;

constexpr uint64_t kNoLimit = ~uint64_t{0};

std::string Text(int size) {
  std::string text;
  for (int i = 0; text.size() < static_cast<size_t>(size); ++i) text += std::to_string(i * i) + ",";
  text.resize(size);
  return text;
}

void ExpectInvalid(const absl::StatusOr<std::string>& result, absl::string_view problem) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("'src.gz'"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(problem));
}

TEST(GunzipTest, InflatesWhatZlibDeflated) {
  for (int size : {0, 1, 1000, 300000}) {
    const std::string raw = Text(size);
    auto result = Gunzip(Gzip(raw), "src.gz", kNoLimit);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, raw) << "size " << size;
  }
}

TEST(GunzipTest, ConcatenatedMembersInflateToTheirConcatenation) {
  auto result = Gunzip(Gzip("first,") + Gzip("") + Gzip("second"), "src.gz", kNoLimit);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, "first,second");
}

TEST(GunzipTest, ZlibStreamIsDetectedFromItsHeader) {
  const std::string raw = Text(5000);
  auto result = Gunzip(testutil::ZlibCompress(raw), "src.gz", kNoLimit);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, raw);
}

TEST(GunzipTest, OutputOfExactlyTheLimitIsAccepted) {
  const std::string raw = Text(100000);
  auto result = Gunzip(Gzip(raw), "src.gz", raw.size());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, raw);
}

TEST(GunzipTest, OneByteOverTheLimitIsResourceExhausted) {
  const std::string raw = Text(100000);
  auto result = Gunzip(Gzip(raw), "src.gz", raw.size() - 1);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("'src.gz'"));
}

TEST(GunzipTest, GzipBombStopsAtTheLimit) {
  // 64 MiB of zeros compress to about 64 KiB; the limit is 1 MiB.
  const std::string bomb = testutil::GzipOfZeros(uint64_t{64} << 20);
  auto result = Gunzip(bomb, "src.gz", 1 << 20);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("limit of 1048576 bytes"));
}

TEST(GunzipTest, ConcatenatedMembersCountTowardsOneLimit) {
  const std::string member = Gzip(Text(600));
  auto result = Gunzip(member + member, "src.gz", 1000);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
}

TEST(GunzipTest, EmptyInputIsRejected) { ExpectInvalid(Gunzip("", "src.gz", kNoLimit), "empty"); }

TEST(GunzipTest, TruncatedStreamIsRejected) {
  std::string packed = Gzip(Text(10000));
  packed.resize(packed.size() - 5);
  ExpectInvalid(Gunzip(packed, "src.gz", kNoLimit), "truncated");
}

TEST(GunzipTest, CorruptDeflateDataIsRejected) {
  std::string packed = Gzip(Text(10000));
  for (size_t i = 10; i < 40; ++i) packed[i] = static_cast<char>(0xFF);
  ExpectInvalid(Gunzip(packed, "src.gz", kNoLimit), "corrupt");
}

TEST(GunzipTest, BadChecksumIsRejected) {
  std::string packed = Gzip(Text(10000));
  packed[packed.size() - 8] ^= 0x01;  // First byte of the CRC-32 trailer.
  ExpectInvalid(Gunzip(packed, "src.gz", kNoLimit), "incorrect data check");
}

TEST(GunzipTest, TrailingGarbageAfterTheLastMemberIsRejected) {
  ExpectInvalid(Gunzip(Gzip("data") + "garbage!", "src.gz", kNoLimit), "corrupt");
}

TEST(GunzipTest, GzipMagicIsRecognised) {
  EXPECT_TRUE(IsGzip(Gzip("x")));
  EXPECT_FALSE(IsGzip(std::string("\x1f", 1)));
  EXPECT_FALSE(IsGzip(std::string("\0\0\x08\x01", 4)));
}

}  // namespace
}  // namespace fedcl::data
