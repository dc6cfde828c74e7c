#include "core/base/crc32.h"

#include <zlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fedcl::base {
namespace {

#if defined(__x86_64__)

// Folding CRC-32 with carry-less multiplication, after Gopal et al., "Fast CRC Computation for
// Generic Polynomials Using PCLMULQDQ Instruction" (Intel, 2009). The constants are the paper's,
// for the bit-reflected IEEE polynomial 0x04C11DB7: x^(4·128±64) mod P for folding four lanes
// over 512 bits, x^(128±64) mod P for folding one lane, x^64 mod P, and the Barrett constants.
constexpr uint64_t kFold512[2] = {0x0154442bd4, 0x01c6e41596};
constexpr uint64_t kFold128[2] = {0x01751997d0, 0x00ccaa009e};
constexpr uint64_t kFold64 = 0x0163cd6124;
constexpr uint64_t kBarrett[2] = {0x01db710641, 0x01f7011641};

// a·k_low ⊕ a·k_high, each a 64×64 → 128-bit carry-less product, folded onto `data`.
__attribute__((target("pclmul,sse4.1"))) inline __m128i Fold(__m128i a, __m128i k, __m128i data) {
  const __m128i low = _mm_clmulepi64_si128(a, k, 0x00);
  const __m128i high = _mm_clmulepi64_si128(a, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(low, high), data);
}

// The CRC register (in zlib's inverted form) after `size` bytes; size >= 64 and a multiple of 16.
__attribute__((target("pclmul,sse4.1"))) uint32_t FoldBlocks(const unsigned char* p, size_t size,
                                                             uint32_t reg) {
  auto load = [](const unsigned char* at) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
  };
  // Four 128-bit lanes, the register folded into the first.
  __m128i lane[4] = {_mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(reg))), load(p + 16),
                     load(p + 32), load(p + 48)};
  p += 64;
  size -= 64;
  const __m128i k512 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kFold512));
  for (; size >= 64; p += 64, size -= 64) {
    for (int i = 0; i < 4; ++i) lane[i] = Fold(lane[i], k512, load(p + 16 * i));
  }
  // Four lanes into one, then any remaining 16-byte blocks into it.
  const __m128i k128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kFold128));
  __m128i acc = lane[0];
  for (int i = 1; i < 4; ++i) acc = Fold(acc, k128, lane[i]);
  for (; size >= 16; p += 16, size -= 16) acc = Fold(acc, k128, load(p));
  // 128 bits → 64 bits.
  const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
  acc = _mm_xor_si128(_mm_srli_si128(acc, 8), _mm_clmulepi64_si128(acc, k128, 0x10));
  const __m128i k64 = _mm_cvtsi64_si128(static_cast<long long>(kFold64));
  acc = _mm_xor_si128(_mm_srli_si128(acc, 4),
                      _mm_clmulepi64_si128(_mm_and_si128(acc, low32), k64, 0x00));
  // Barrett reduction 64 bits → 32 bits.
  const __m128i barrett = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kBarrett));
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(acc, low32), barrett, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), barrett, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(acc, t), 1));
}

bool HasClmul() {
  static const bool has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}

#endif  // __x86_64__

uint32_t ZlibCrc32(const char* data, size_t size, uint32_t crc) {
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(data), static_cast<z_size_t>(size)));
}

}  // namespace

uint32_t Crc32(absl::string_view data, uint32_t crc) {
#if defined(__x86_64__)
  if (data.size() >= 64 && HasClmul()) {
    const size_t folded = data.size() & ~size_t{15};
    // zlib's value is the complement of the register the folding works on.
    crc = ~FoldBlocks(reinterpret_cast<const unsigned char*>(data.data()), folded, ~crc);
    data.remove_prefix(folded);
  }
#endif
  return ZlibCrc32(data.data(), data.size(), crc);
}

bool Crc32IsAccelerated() {
#if defined(__x86_64__)
  return HasClmul();
#else
  return false;
#endif
}

}  // namespace fedcl::base
