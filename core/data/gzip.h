// In-memory gzip decompression with a size limit.
//
// Dataset files ship gzip-compressed, and a compressed file says nothing trustworthy about its
// decompressed size: a few kilobytes can inflate to gigabytes (a "gzip bomb"). Gunzip therefore
// takes the caller's output budget and stops as soon as the output would pass it:
//
//   FEDCL_ASSIGN_OR_RETURN(std::string raw, data::Gunzip(compressed, path, /*max=*/64 << 20));
//
// Thread-safe (no shared state).
#ifndef FEDCL_CORE_DATA_GZIP_H_
#define FEDCL_CORE_DATA_GZIP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedcl::data {

// Whether `bytes` starts with the gzip magic bytes 1f 8b.
bool IsGzip(absl::string_view bytes);

// Inflates `compressed`, a gzip stream or a zlib stream (detected from the header, zlib's
// windowBits 15 + 32). Several gzip members one after another (what `cat a.gz b.gz` makes) are
// inflated into one output, as gzip(1) does; anything after the last member that is not another
// member, trailing zero padding included, is an error.
//
// `source_name` (usually the path) prefixes every error message. Errors:
//   InvalidArgument    empty input, a corrupt or truncated stream, a bad checksum, or a zlib stream
//                      that needs a preset dictionary.
//   ResourceExhausted  the output would be larger than `max_output_bytes`, or zlib ran out of
//                      memory. Decompression stops at the limit; at most max_output_bytes + 1
//                      bytes are ever buffered.
absl::StatusOr<std::string> Gunzip(absl::string_view compressed, absl::string_view source_name,
                                   uint64_t max_output_bytes);

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_GZIP_H_
