#include "tests/core/data/idx_test_util.h"

#include <zlib.h>

#include <algorithm>
#include <cstdlib>

#include "core/base/status_macros.h"

namespace fedcl::data::testutil {
namespace {

// Deflates `raw` followed by `zeros` zero bytes (fed from one reused block).
std::string Deflate(absl::string_view raw, uint64_t zeros, int window_bits, int level) {
  z_stream z{};
  FEDCL_CHECK(deflateInit2(&z, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  const std::string zero_block(1 << 20, '\0');
  std::string out;
  char buffer[1 << 16];
  uint64_t zeros_left = zeros;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  int flush = Z_NO_FLUSH;
  while (true) {
    if (z.avail_in == 0 && zeros_left > 0) {
      const uint64_t chunk = std::min<uint64_t>(zeros_left, zero_block.size());
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zero_block.data()));
      z.avail_in = static_cast<uInt>(chunk);
      zeros_left -= chunk;
    }
    if (z.avail_in == 0 && zeros_left == 0) flush = Z_FINISH;
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof(buffer);
    const int result = deflate(&z, flush);
    FEDCL_CHECK(result == Z_OK || result == Z_STREAM_END || result == Z_BUF_ERROR);
    out.append(buffer, sizeof(buffer) - z.avail_out);
    if (result == Z_STREAM_END) break;
  }
  deflateEnd(&z);
  return out;
}

}  // namespace

std::string EncodeIdx(const std::vector<uint32_t>& dims, absl::string_view payload, uint8_t type) {
  std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(d >> shift));
  }
  out.append(payload.data(), payload.size());
  return out;
}

std::string EncodeIdx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values) {
  return EncodeIdx(dims,
                   absl::string_view(reinterpret_cast<const char*>(values.data()), values.size()));
}

std::string Gzip(absl::string_view raw, int level) { return Deflate(raw, 0, 15 + 16, level); }

std::string ZlibCompress(absl::string_view raw) { return Deflate(raw, 0, 15, 6); }

std::string GzipOfZeros(uint64_t size) { return Deflate("", size, 15 + 16, 9); }

}  // namespace fedcl::data::testutil
