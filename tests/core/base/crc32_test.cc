#include "core/base/crc32.h"

#include <zlib.h>

#include <string>

#include "core/base/random.h"
#include "gtest/gtest.h"

namespace fedcl::base {
namespace {

uint32_t Reference(const std::string& data, uint32_t crc = 0) {
  return static_cast<uint32_t>(
      crc32(crc, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

TEST(Crc32Test, MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
}

// Every length (around the 64-byte fold and its 16-byte steps), every alignment, random bytes.
TEST(Crc32Test, MatchesZlibForEveryLengthAndAlignment) {
  Rng rng(11);
  std::string buffer(4096 + 64, '\0');
  for (char& c : buffer) c = static_cast<char>(rng.UniformInt(256));
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t length = 0; length <= 600; ++length) {
      const std::string data = buffer.substr(offset, length);
      ASSERT_EQ(Crc32(data), Reference(data)) << "offset " << offset << " length " << length;
    }
  }
  const std::string big = buffer.substr(3, 4096);
  EXPECT_EQ(Crc32(big), Reference(big));
}

TEST(Crc32Test, IncrementalEqualsWhole) {
  Rng rng(12);
  std::string data(100000, '\0');
  for (char& c : data) c = static_cast<char>(rng.UniformInt(256));
  uint32_t crc = 0;
  for (size_t at = 0; at < data.size(); at += 7919)
    crc = Crc32(absl::string_view(data).substr(at, 7919), crc);
  EXPECT_EQ(crc, Reference(data));
  EXPECT_EQ(
      Crc32(absl::string_view(data).substr(500), Crc32(absl::string_view(data).substr(0, 500))),
      Reference(data));
}

}  // namespace
}  // namespace fedcl::base
