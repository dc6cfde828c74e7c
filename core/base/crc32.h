// CRC-32 (IEEE 802.3, the one zlib's crc32 computes), fast.
//
// fedcl checksums every update it receives and every payload it sends, so the checksum sits on
// the server's hot path: zlib's table-driven crc32 manages about 4 GB/s here, which was a fifth
// of the server's CPU per 4 MB update. On CPUs with carry-less multiplication (PCLMULQDQ, checked
// at run time) this folds 64 bytes per step, several times faster; elsewhere, and for the tail
// shorter than one fold, it is zlib's crc32. Results are identical to zlib's in every case.
//
//   uint32_t crc = base::Crc32(first_chunk);
//   crc = base::Crc32(next_chunk, crc);        // incremental, like zlib's crc32(crc, ...)
#ifndef FEDCL_CORE_BASE_CRC32_H_
#define FEDCL_CORE_BASE_CRC32_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace fedcl::base {

// CRC-32 of `data`, continuing from `crc` (the CRC of what came before; 0 to start).
uint32_t Crc32(absl::string_view data, uint32_t crc = 0);

// True if Crc32 uses carry-less multiplication on this CPU.
bool Crc32IsAccelerated();

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_CRC32_H_
