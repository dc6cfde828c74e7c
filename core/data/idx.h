// Decoding of IDX files, the format of MNIST and Fashion-MNIST.
//
// An IDX file is a big-endian header followed by the values, row-major:
//
//   bytes 0-1   zero
//   byte  2     data type code (0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32,
//               0x0D float32, 0x0E float64)
//   byte  3     number of dimensions d
//   4·d bytes   the size of each dimension, big-endian uint32
//   the values  product(dims) · sizeof(type) bytes, nothing after them
//
// fedcl's datasets are all unsigned bytes, so DecodeIdx supports type 0x08 only and names any
// other type in its error. The files usually ship gzip-compressed; ReadIdxFile reads one through
// the injected FileSystem and inflates it when it starts with the gzip magic bytes:
//
//   FEDCL_ASSIGN_OR_RETURN(data::IdxArray labels,
//                          data::ReadIdxFile(fs, "/data/train-labels-idx1-ubyte.gz"));
//   // labels.dims == {60000}, labels.values.size() == 60000
//
// Decoding never trusts the header: a short or oversized file, a bad magic number, an unknown type,
// too many dimensions or a dimension product that overflows are each an InvalidArgument whose
// message names the source and the problem. A successful decode always holds exactly
// product(dims) values. All functions are thread-safe (they share no state).
#ifndef FEDCL_CORE_DATA_IDX_H_
#define FEDCL_CORE_DATA_IDX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"

namespace fedcl::data {

// IDX data type codes (byte 2 of the header).
enum class IdxType : uint8_t {
  kUnsignedByte = 0x08,
  kSignedByte = 0x09,
  kInt16 = 0x0B,
  kInt32 = 0x0C,
  kFloat32 = 0x0D,
  kFloat64 = 0x0E,
};

// More dimensions than this is treated as a corrupt header (real files have 1 to 4).
inline constexpr int kMaxIdxDims = 8;

// Default limit on the size of one IDX file after decompression (1 GiB). Fashion-MNIST's largest
// file is 47 MB.
inline constexpr uint64_t kDefaultMaxIdxBytes = uint64_t{1} << 30;

// A decoded IDX array.
struct IdxArray {
  IdxType type = IdxType::kUnsignedByte;
  // Dimension sizes, outermost first (60000, 28, 28 for the training images).
  std::vector<int64_t> dims;
  // product(dims) values, row-major.
  std::vector<uint8_t> values;

  // product(dims); 1 for no dimensions.
  int64_t num_elements() const;
};

// "60000x28x28".
std::string IdxDimsToString(const std::vector<int64_t>& dims);

// Decodes an uncompressed IDX file held in `bytes`. `source_name` (usually the path) prefixes every
// error message. InvalidArgument for any malformed input, including a valid header of a type
// other than unsigned byte.
absl::StatusOr<IdxArray> DecodeIdx(absl::string_view bytes, absl::string_view source_name);

// Reads `path` through `fs`, inflates it if it starts with the gzip magic bytes 1f 8b, and decodes
// it. `max_bytes` bounds both the file and its decompressed size (see Gunzip in gzip.h).
// Errors: those of FileSystem::ReadFile (NotFound, ResourceExhausted, ...), those of Gunzip
// (InvalidArgument, ResourceExhausted) and those of DecodeIdx; every message names `path`.
absl::StatusOr<IdxArray> ReadIdxFile(const base::FileSystem& fs, absl::string_view path,
                                     uint64_t max_bytes = kDefaultMaxIdxBytes);

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_IDX_H_
