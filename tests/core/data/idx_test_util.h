// Builders of IDX and gzip bytes for the data tests.
//
// They encode exactly what they are told, header and payload independently, so tests can also
// build inconsistent files (a header that promises more data than follows, a bad type code).
#ifndef FEDCL_TESTS_CORE_DATA_IDX_TEST_UTIL_H_
#define FEDCL_TESTS_CORE_DATA_IDX_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace fedcl::data::testutil {

// An IDX file: two zero bytes, `type`, the number of dimensions, each dimension as a big-endian
// uint32, then `payload` verbatim.
std::string EncodeIdx(const std::vector<uint32_t>& dims, absl::string_view payload,
                      uint8_t type = 0x08);

// An unsigned-byte IDX file of `values`.
std::string EncodeIdx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values);

// One gzip member holding `raw` (zlib's deflate, windowBits 15 + 16).
std::string Gzip(absl::string_view raw, int level = 6);

// A zlib stream (RFC 1950) holding `raw`.
std::string ZlibCompress(absl::string_view raw);

// A gzip member that inflates to `size` zero bytes, built without materialising them.
std::string GzipOfZeros(uint64_t size);

}  // namespace fedcl::data::testutil

#endif  // FEDCL_TESTS_CORE_DATA_IDX_TEST_UTIL_H_
