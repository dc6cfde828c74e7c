#include "core/base/crc32.h"

#include <zlib.h>

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fedcl::base {
namespace {

uint32_t ZlibCrc32(const char* data, size_t size, uint32_t crc) {
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(data), static_cast<z_size_t>(size)));
}

#if defined(__x86_64__)

// Folding CRC-32 with carry-less multiplication, after Gopal et al., "Fast CRC Computation for
// Generic Polynomials Using PCLMULQDQ Instruction" (Intel, 2009). Folding a 128-bit block forward
// by D bits multiplies its halves by x^(D+32) and x^(D-32) mod P (bit-reflected, shifted left by
// one), for the reflected IEEE polynomial 0x04C11DB7. The distances used: 2048 bits (four 512-bit
// lanes), 512 (four 128-bit lanes, or one 512-bit lane), 128 (one 128-bit lane); then x^64 mod P
// and the Barrett constants reduce 128 bits to 32.
constexpr uint64_t kFold2048[2] = {0x011542778a, 0x01322d1430};
constexpr uint64_t kFold512[2] = {0x0154442bd4, 0x01c6e41596};
constexpr uint64_t kFold128[2] = {0x01751997d0, 0x00ccaa009e};
constexpr uint64_t kFold64 = 0x0163cd6124;
constexpr uint64_t kBarrett[2] = {0x01db710641, 0x01f7011641};

#define FEDCL_CLMUL_TARGET __attribute__((target("pclmul,sse4.1")))
#define FEDCL_WIDE_TARGET \
  __attribute__((target("pclmul,sse4.1,avx2,avx512f,avx512vl,avx512bw,vpclmulqdq")))

FEDCL_CLMUL_TARGET inline __m128i LoadConstants(const uint64_t (&k)[2]) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(k));
}

// a·k_low ⊕ a·k_high, each a 64×64 → 128-bit carry-less product, folded onto `data`.
FEDCL_CLMUL_TARGET inline __m128i Fold(__m128i a, __m128i k, __m128i data) {
  const __m128i low = _mm_clmulepi64_si128(a, k, 0x00);
  const __m128i high = _mm_clmulepi64_si128(a, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(low, high), data);
}

// 16 bytes from p + at, also stored to out + at when copying.
template <bool kCopy>
FEDCL_CLMUL_TARGET inline __m128i Load16(const unsigned char* p, unsigned char* out, size_t at) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at));
  if constexpr (kCopy) _mm_storeu_si128(reinterpret_cast<__m128i*>(out + at), v);
  return v;
}

// Folds the 16-byte blocks of [at, size) into `acc` and reduces it to the CRC register.
template <bool kCopy>
FEDCL_CLMUL_TARGET inline uint32_t FinishFold(__m128i acc, const unsigned char* p,
                                              unsigned char* out, size_t at, size_t size) {
  const __m128i k128 = LoadConstants(kFold128);
  for (; at + 16 <= size; at += 16) acc = Fold(acc, k128, Load16<kCopy>(p, out, at));
  // 128 bits → 64 bits.
  const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);
  acc = _mm_xor_si128(_mm_srli_si128(acc, 8), _mm_clmulepi64_si128(acc, k128, 0x10));
  const __m128i k64 = _mm_cvtsi64_si128(static_cast<long long>(kFold64));
  acc = _mm_xor_si128(_mm_srli_si128(acc, 4),
                      _mm_clmulepi64_si128(_mm_and_si128(acc, low32), k64, 0x00));
  // Barrett reduction 64 bits → 32 bits.
  const __m128i barrett = LoadConstants(kBarrett);
  __m128i t = _mm_clmulepi64_si128(_mm_and_si128(acc, low32), barrett, 0x10);
  t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), barrett, 0x00);
  return static_cast<uint32_t>(_mm_extract_epi32(_mm_xor_si128(acc, t), 1));
}

// The CRC register (in zlib's inverted form) after `size` bytes; size >= 64 and a multiple of 16.
// Four 128-bit lanes, 64 bytes per step.
template <bool kCopy>
FEDCL_CLMUL_TARGET uint32_t FoldClmul(const unsigned char* p, unsigned char* out, size_t size,
                                      uint32_t reg) {
  __m128i lane[4] = {
      _mm_xor_si128(Load16<kCopy>(p, out, 0), _mm_cvtsi32_si128(static_cast<int>(reg))),
      Load16<kCopy>(p, out, 16), Load16<kCopy>(p, out, 32), Load16<kCopy>(p, out, 48)};
  size_t at = 64;
  const __m128i k512 = LoadConstants(kFold512);
  for (; at + 64 <= size; at += 64) {
    for (int i = 0; i < 4; ++i) lane[i] = Fold(lane[i], k512, Load16<kCopy>(p, out, at + 16 * i));
  }
  const __m128i k128 = LoadConstants(kFold128);
  __m128i acc = lane[0];
  for (int i = 1; i < 4; ++i) acc = Fold(acc, k128, lane[i]);
  return FinishFold<kCopy>(acc, p, out, at, size);
}

FEDCL_WIDE_TARGET inline __m512i Fold512(__m512i a, __m512i k, __m512i data) {
  const __m512i low = _mm512_clmulepi64_epi128(a, k, 0x00);
  const __m512i high = _mm512_clmulepi64_epi128(a, k, 0x11);
  return _mm512_ternarylogic_epi64(low, high, data, 0x96);  // low ⊕ high ⊕ data
}

template <bool kCopy>
FEDCL_WIDE_TARGET inline __m512i Load64(const unsigned char* p, unsigned char* out, size_t at) {
  const __m512i v = _mm512_loadu_si512(p + at);
  if constexpr (kCopy) _mm512_storeu_si512(out + at, v);
  return v;
}

// As FoldClmul for size >= 256: four 512-bit lanes (each four 128-bit lanes), 256 bytes per step.
template <bool kCopy>
FEDCL_WIDE_TARGET uint32_t FoldWide(const unsigned char* p, unsigned char* out, size_t size,
                                    uint32_t reg) {
  const __m512i first =
      _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128(static_cast<int>(reg)), 0);
  __m512i lane[4] = {_mm512_xor_si512(Load64<kCopy>(p, out, 0), first), Load64<kCopy>(p, out, 64),
                     Load64<kCopy>(p, out, 128), Load64<kCopy>(p, out, 192)};
  size_t at = 256;
  const __m512i k2048 = _mm512_broadcast_i32x4(LoadConstants(kFold2048));
  for (; at + 256 <= size; at += 256) {
    for (int i = 0; i < 4; ++i)
      lane[i] = Fold512(lane[i], k2048, Load64<kCopy>(p, out, at + 64 * i));
  }
  // Four 512-bit lanes into one (64 bytes apart), then any further 64-byte blocks into it.
  const __m512i k512 = _mm512_broadcast_i32x4(LoadConstants(kFold512));
  __m512i wide = lane[0];
  for (int i = 1; i < 4; ++i) wide = Fold512(wide, k512, lane[i]);
  for (; at + 64 <= size; at += 64) wide = Fold512(wide, k512, Load64<kCopy>(p, out, at));
  // Its four 128-bit lanes into one (16 bytes apart).
  const __m128i k128 = LoadConstants(kFold128);
  __m128i acc = _mm512_extracti32x4_epi32(wide, 0);
  acc = Fold(acc, k128, _mm512_extracti32x4_epi32(wide, 1));
  acc = Fold(acc, k128, _mm512_extracti32x4_epi32(wide, 2));
  acc = Fold(acc, k128, _mm512_extracti32x4_epi32(wide, 3));
  return FinishFold<kCopy>(acc, p, out, at, size);
}

bool HasClmul() {
  static const bool has = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return has;
}

bool HasWide() {
  static const bool has = HasClmul() && __builtin_cpu_supports("vpclmulqdq") &&
                          __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw");
  return has;
}

// The CRC register after the folded prefix of `size` bytes (a multiple of 16), or `reg` unchanged
// if `kernel` cannot fold that few.
template <bool kCopy>
uint32_t FoldPrefix(Crc32Kernel kernel, const unsigned char* p, unsigned char* out, size_t size,
                    uint32_t reg) {
  if (kernel == Crc32Kernel::kWide && size >= 256) return FoldWide<kCopy>(p, out, size, reg);
  if (kernel != Crc32Kernel::kZlib && size >= 64) return FoldClmul<kCopy>(p, out, size, reg);
  return reg;
}

#endif  // __x86_64__

Crc32Kernel Best() {
#if defined(__x86_64__)
  if (HasWide()) return Crc32Kernel::kWide;
  if (HasClmul()) return Crc32Kernel::kClmul;
#endif
  return Crc32Kernel::kZlib;
}

}  // namespace

bool Crc32KernelAvailable(Crc32Kernel kernel) {
  switch (kernel) {
    case Crc32Kernel::kZlib:
      return true;
#if defined(__x86_64__)
    case Crc32Kernel::kClmul:
      return HasClmul();
    case Crc32Kernel::kWide:
      return HasWide();
#else
    default:
      return false;
#endif
  }
  return false;
}

uint32_t Crc32CopyWith(Crc32Kernel kernel, absl::string_view data, char* out, uint32_t crc) {
  size_t folded = 0;
#if defined(__x86_64__)
  if (kernel != Crc32Kernel::kZlib && data.size() >= 64) {
    folded = data.size() & ~size_t{15};
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    auto* o = reinterpret_cast<unsigned char*>(out);
    // zlib's value is the complement of the register the folding works on.
    crc = ~(out != nullptr ? FoldPrefix<true>(kernel, p, o, folded, ~crc)
                           : FoldPrefix<false>(kernel, p, o, folded, ~crc));
  }
#endif
  if (out != nullptr && data.size() > folded) {
    std::memcpy(out + folded, data.data() + folded, data.size() - folded);
  }
  return ZlibCrc32(data.data() + folded, data.size() - folded, crc);
}

uint32_t Crc32(absl::string_view data, uint32_t crc) {
  static const Crc32Kernel kernel = Best();
  return Crc32CopyWith(kernel, data, nullptr, crc);
}

uint32_t Crc32Copy(absl::string_view data, char* out, uint32_t crc) {
  static const Crc32Kernel kernel = Best();
  return Crc32CopyWith(kernel, data, out, crc);
}

bool Crc32IsAccelerated() { return Best() != Crc32Kernel::kZlib; }

}  // namespace fedcl::base
