#include "core/data/idx.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/memory_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/idx_test_util.h"

namespace fedcl::data {
namespace {

using ::testing::HasSubstr;
using testutil::EncodeIdx;
using testutil::Gzip;

std::vector<uint8_t> Iota(int n) {
  std::vector<uint8_t> values(n);
  for (int i = 0; i < n; ++i) values[i] = static_cast<uint8_t>(i * 7 + 3);
  return values;
}

// Expects an InvalidArgument that names `source` and contains `problem`.
void ExpectRejected(const absl::StatusOr<IdxArray>& result, absl::string_view source,
                    absl::string_view problem) {
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(absl::StrCat("'", source, "'")));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(problem));
}

TEST(IdxTest, EncodedArrayRoundTrips) {
  const std::vector<uint8_t> values = Iota(2 * 3 * 4);
  auto decoded = DecodeIdx(EncodeIdx({2, 3, 4}, values), "a.idx");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->type, IdxType::kUnsignedByte);
  EXPECT_EQ(decoded->dims, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(decoded->num_elements(), 24);
  EXPECT_EQ(decoded->values, values);
}

TEST(IdxTest, EmptyDimensionDecodesToNoValues) {
  auto decoded = DecodeIdx(EncodeIdx({0, 28, 28}, ""), "empty.idx");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->num_elements(), 0);
  EXPECT_TRUE(decoded->values.empty());
}

// Found by fuzzing (tests/fuzz/corpus/idx/crash-num-elements-overflow): the decoder bounds the
// product of the dimensions, which a zero makes 0, not the partial products before the zero;
// num_elements() multiplied them and overflowed (UndefinedBehaviorSanitizer: signed overflow).
TEST(IdxTest, HugeDimensionsBeforeAZeroAreAnEmptyArray) {
  auto decoded = DecodeIdx(EncodeIdx({0x80ffffff, 0xfffffff5, 0, 0x004c0303}, ""), "zero.idx");
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->num_elements(), 0);
  EXPECT_TRUE(decoded->values.empty());
}

TEST(IdxTest, InputShorterThanTheMagicNumberIsRejected) {
  ExpectRejected(DecodeIdx(std::string("\0\0\x08", 3), "short.idx"), "short.idx", "too short");
}

TEST(IdxTest, NonZeroMagicBytesAreRejected) {
  std::string bytes = EncodeIdx({4}, Iota(4));
  bytes[1] = 1;
  ExpectRejected(DecodeIdx(bytes, "magic.idx"), "magic.idx", "bad magic number 0x00010801");
}

TEST(IdxTest, UnknownTypeCodeIsRejected) {
  ExpectRejected(DecodeIdx(EncodeIdx({4}, "abcd", 0x07), "t.idx"), "t.idx",
                 "unknown IDX data type 0x07");
}

TEST(IdxTest, KnownButUnsupportedTypeIsRejectedByName) {
  ExpectRejected(DecodeIdx(EncodeIdx({1}, "abcd", 0x0D), "f.idx"), "f.idx",
                 "0x0D (float32) is not supported");
}

TEST(IdxTest, ZeroDimensionsAreRejected) {
  ExpectRejected(DecodeIdx(EncodeIdx({}, ""), "z.idx"), "z.idx", "zero dimensions");
}

TEST(IdxTest, TooManyDimensionsAreRejected) {
  std::vector<uint32_t> dims(kMaxIdxDims + 1, 1);
  ExpectRejected(DecodeIdx(EncodeIdx(dims, "x"), "d.idx"), "d.idx", "9 dimensions");
}

TEST(IdxTest, TruncatedHeaderIsRejected) {
  std::string bytes = EncodeIdx({60000, 28, 28}, "");
  bytes.resize(10);
  ExpectRejected(DecodeIdx(bytes, "h.idx"), "h.idx",
                 "truncated header: 3 dimensions need 16 header bytes, file has 10");
}

TEST(IdxTest, DimensionProductOverflowIsRejected) {
  const uint32_t big = 0xFFFFFFFF;
  ExpectRejected(DecodeIdx(EncodeIdx({big, big, big}, "x"), "o.idx"), "o.idx",
                 "dimension product 4294967295x4294967295x4294967295 overflows");
}

TEST(IdxTest, TruncatedDataIsRejectedNamingTheFile) {
  ExpectRejected(
      DecodeIdx(EncodeIdx({60000, 28, 28}, std::string(1234, 'x')), "train-images-idx3-ubyte.gz"),
      "train-images-idx3-ubyte.gz",
      "truncated: header says 60000x28x28 = 47040000 bytes of data, file has 1234");
}

TEST(IdxTest, TrailingBytesAreRejectedAsOversized) {
  ExpectRejected(DecodeIdx(EncodeIdx({2, 2}, "abcde"), "big.idx"), "big.idx",
                 "oversized: header says 2x2 = 4 bytes of data, file has 5");
}

TEST(ReadIdxFileTest, ReadsGzippedAndPlainFilesAlike) {
  base::MemoryFileSystem fs;
  const std::string raw = EncodeIdx({3, 5}, Iota(15));
  fs.SetFile("/d/plain.idx", raw);
  fs.SetFile("/d/packed.idx.gz", Gzip(raw));
  auto plain = ReadIdxFile(fs, "/d/plain.idx");
  auto packed = ReadIdxFile(fs, "/d/packed.idx.gz");
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(plain->dims, packed->dims);
  EXPECT_EQ(plain->values, Iota(15));
  EXPECT_EQ(packed->values, Iota(15));
}

TEST(ReadIdxFileTest, MissingFileIsNotFound) {
  base::MemoryFileSystem fs;
  EXPECT_EQ(ReadIdxFile(fs, "/nope.gz").status().code(), absl::StatusCode::kNotFound);
}

TEST(ReadIdxFileTest, CorruptContentIsRejectedNamingThePath) {
  base::MemoryFileSystem fs;
  fs.SetFile("/d/labels.gz", Gzip(EncodeIdx({10}, "short")));
  ExpectRejected(ReadIdxFile(fs, "/d/labels.gz"), "/d/labels.gz", "truncated");
}

TEST(ReadIdxFileTest, GzipBombIsRefusedAtTheLimit) {
  base::MemoryFileSystem fs;
  fs.SetFile("/bomb.gz", testutil::GzipOfZeros(8 << 20));
  auto result = ReadIdxFile(fs, "/bomb.gz", /*max_bytes=*/1 << 20);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("/bomb.gz"));
}

TEST(ReadIdxFileTest, FileLargerThanTheLimitIsRefused) {
  base::MemoryFileSystem fs;
  fs.SetFile("/x.idx", EncodeIdx({100}, std::string(100, 'a')));
  EXPECT_EQ(ReadIdxFile(fs, "/x.idx", 50).status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace fedcl::data
