// CRC-32 (IEEE 802.3, the one zlib's crc32 computes), fast.
//
// fedcl checksums every update it receives and every payload it sends, so the checksum sits on
// the server's hot path. zlib's table-driven crc32 manages about 4 GB/s on the 2-core EPYC the
// benchmarks run on (Debian's zlib 1.2.13 has no carry-less multiplication kernel). Here the bytes
// are folded with carry-less multiplication instead, chosen at run time: 256 bytes per step on
// 512-bit registers where the CPU has VPCLMULQDQ and AVX-512, 64 bytes per step with PCLMULQDQ,
// and zlib's crc32 elsewhere and for the tail shorter than one 16-byte block. Results are
// identical to zlib's in every case.
//
//   uint32_t crc = base::Crc32(first_chunk);
//   crc = base::Crc32(next_chunk, crc);        // incremental, like zlib's crc32(crc, ...)
//
// Crc32Copy checksums bytes while it copies them, in one pass: a server staging an upload reads
// each byte once instead of once for the copy and again for the checksum.
//
// Thread-safe (the kernel is chosen once, from the CPU's feature flags).
#ifndef FEDCL_CORE_BASE_CRC32_H_
#define FEDCL_CORE_BASE_CRC32_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace fedcl::base {

// CRC-32 of `data`, continuing from `crc` (the CRC of what came before; 0 to start).
uint32_t Crc32(absl::string_view data, uint32_t crc = 0);

// Copies `data` to `out` (data.size() bytes; the two must not overlap) and returns the CRC-32 of
// `data` continuing from `crc`, as Crc32 would.
uint32_t Crc32Copy(absl::string_view data, char* out, uint32_t crc = 0);

// True if Crc32 uses carry-less multiplication on this CPU.
bool Crc32IsAccelerated();

// The implementations, for tests and benchmarks that compare them: kZlib is zlib's crc32 alone,
// kClmul folds 64 bytes per step with PCLMULQDQ, kWide 256 bytes per step with VPCLMULQDQ on
// 512-bit registers. Crc32 and Crc32Copy use the best one the CPU has.
enum class Crc32Kernel { kZlib, kClmul, kWide };
bool Crc32KernelAvailable(Crc32Kernel kernel);
// As Crc32Copy (`out` may be null: no copy) with `kernel`, which must be available.
uint32_t Crc32CopyWith(Crc32Kernel kernel, absl::string_view data, char* out, uint32_t crc);

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_CRC32_H_
