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

// Every kernel the CPU has, with and without the copy, against zlib on random bytes: random
// lengths (short ones around the 16-, 64- and 256-byte steps, long ones up to 64 kB), offsets and
// starting CRCs. The copy lands exactly in [out, out + size) and equals the input.
TEST(Crc32Test, EveryKernelAndItsCopyMatchZlibOnRandomInputs) {
  Rng rng(13);
  std::string buffer((1 << 16) + 64, '\0');
  for (char& c : buffer) c = static_cast<char>(rng.UniformInt(256));
  int kernels = 0;
  for (Crc32Kernel kernel : {Crc32Kernel::kZlib, Crc32Kernel::kClmul, Crc32Kernel::kWide}) {
    if (!Crc32KernelAvailable(kernel)) continue;
    ++kernels;
    for (int trial = 0; trial < 3000; ++trial) {
      const size_t offset = rng.UniformInt(64);
      const size_t length = rng.UniformInt(trial < 2000 ? 700 : 1 << 16);
      const uint32_t start = static_cast<uint32_t>(rng.UniformInt(1u << 31)) * 2 + (trial & 1);
      const std::string data = buffer.substr(offset, length);
      const uint32_t expected = Reference(data, start);
      ASSERT_EQ(Crc32CopyWith(kernel, data, nullptr, start), expected)
          << "kernel " << static_cast<int>(kernel) << " length " << length;
      std::string out(length + 2, '\x5a');
      ASSERT_EQ(Crc32CopyWith(kernel, data, out.data() + 1, start), expected)
          << "kernel " << static_cast<int>(kernel) << " copying, length " << length;
      ASSERT_EQ(out.substr(1, length), data);
      ASSERT_EQ(out.front(), '\x5a');
      ASSERT_EQ(out.back(), '\x5a');
    }
  }
  EXPECT_GE(kernels, 1);
  std::string out(1000, '\0');
  EXPECT_EQ(Crc32Copy(absl::string_view(buffer).substr(5, 1000), out.data(), 7),
            Reference(buffer.substr(5, 1000), 7));
  EXPECT_EQ(out, buffer.substr(5, 1000));
}

}  // namespace
}  // namespace fedcl::base
