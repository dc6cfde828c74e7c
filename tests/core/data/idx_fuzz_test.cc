// Robustness of the IDX and gzip decoders against damaged input: every result must be either a
// complete array or an InvalidArgument / ResourceExhausted error, never a crash or a short array.
#include <string>
#include <vector>

#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "core/data/gzip.h"
#include "core/data/idx.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/idx_test_util.h"

namespace fedcl::data {
namespace {

using ::testing::AnyOf;

constexpr uint64_t kLimit = 1 << 16;

std::string ValidFile() {
  std::vector<uint8_t> values(3 * 4 * 5);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<uint8_t>(i * 37);
  return testutil::EncodeIdx({3, 4, 5}, values);
}

template <typename T>
void ExpectCleanError(const absl::StatusOr<T>& result) {
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().code(),
              AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kResourceExhausted))
      << result.status();
}

// OK with exactly product(dims) values, or a clean error.
void ExpectCompleteOrCleanError(const absl::StatusOr<IdxArray>& result) {
  if (!result.ok()) return ExpectCleanError(result);
  int64_t product = 1;
  for (int64_t d : result->dims) product *= d;
  EXPECT_EQ(static_cast<int64_t>(result->values.size()), product);
}

// Applies one to four random edits: overwrite, insert, erase, truncate or append.
std::string Mutate(std::string bytes, base::Rng& rng) {
  const int edits = 1 + static_cast<int>(rng.UniformInt(4));
  for (int e = 0; e < edits; ++e) {
    const char random_byte = static_cast<char>(rng.UniformInt(256));
    const size_t at = static_cast<size_t>(rng.UniformInt(bytes.size() + 1));
    switch (rng.UniformInt(5)) {
      case 0:
        if (at < bytes.size()) bytes[at] = random_byte;
        break;
      case 1:
        bytes.insert(bytes.begin() + at, random_byte);
        break;
      case 2:
        if (at < bytes.size()) bytes.erase(at, 1);
        break;
      case 3:
        bytes.resize(at);
        break;
      default:
        bytes.append(1 + rng.UniformInt(8), random_byte);
    }
  }
  return bytes;
}

TEST(IdxFuzzTest, EveryTruncationOfAValidFileIsRejected) {
  const std::string raw = ValidFile();
  const std::string packed = testutil::Gzip(raw);
  base::MemoryFileSystem fs;
  for (size_t length = 0; length < raw.size(); ++length) {
    SCOPED_TRACE(length);
    ExpectCleanError(DecodeIdx(raw.substr(0, length), "raw"));
  }
  for (size_t length = 0; length < packed.size(); ++length) {
    SCOPED_TRACE(length);
    ExpectCleanError(Gunzip(packed.substr(0, length), "packed", kLimit));
    fs.SetFile("/f.gz", packed.substr(0, length));
    ExpectCleanError(ReadIdxFile(fs, "/f.gz", kLimit));
  }
  fs.SetFile("/f.gz", packed);
  auto whole = ReadIdxFile(fs, "/f.gz", kLimit);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->values.size(), 60u);
}

TEST(IdxFuzzTest, RandomlyCorruptedFilesYieldCompleteArraysOrCleanErrors) {
  const std::string raw = ValidFile();
  const std::string packed = testutil::Gzip(raw);
  base::MemoryFileSystem fs;
  base::Rng rng(20240611);
  int accepted = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const std::string bytes = Mutate(trial % 2 == 0 ? raw : packed, rng);
    SCOPED_TRACE(trial);
    ExpectCompleteOrCleanError(DecodeIdx(bytes, "fuzz"));
    auto inflated = Gunzip(bytes, "fuzz", kLimit);
    if (!inflated.ok()) ExpectCleanError(inflated);
    fs.SetFile("/fuzz", bytes);
    auto read = ReadIdxFile(fs, "/fuzz", kLimit);
    ExpectCompleteOrCleanError(read);
    accepted += read.ok();
  }
  // Most edits must be caught (the checksum and the exact-size rule see to that).
  EXPECT_LT(accepted, 400);
}

TEST(IdxFuzzTest, RandomBytesYieldCompleteArraysOrCleanErrors) {
  base::Rng rng(7);
  base::MemoryFileSystem fs;
  for (int trial = 0; trial < 4000; ++trial) {
    std::string bytes(rng.UniformInt(48), '\0');
    for (char& c : bytes) c = static_cast<char>(rng.UniformInt(256));
    // Give a third of them a plausible header so the decoders get past the first check.
    if (trial % 3 == 1 && bytes.size() >= 4) bytes.replace(0, 4, std::string("\0\0\x08\x01", 4));
    if (trial % 3 == 2 && bytes.size() >= 2) bytes.replace(0, 2, "\x1f\x8b");
    SCOPED_TRACE(trial);
    ExpectCompleteOrCleanError(DecodeIdx(bytes, "random"));
    auto inflated = Gunzip(bytes, "random", kLimit);
    if (!inflated.ok()) ExpectCleanError(inflated);
    fs.SetFile("/random", bytes);
    ExpectCompleteOrCleanError(ReadIdxFile(fs, "/random", kLimit));
  }
}

}  // namespace
}  // namespace fedcl::data
