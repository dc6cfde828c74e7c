#include "core/data/idx.h"

#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/data/gzip.h"

namespace fedcl::data {
namespace {

template <typename... Args>
absl::Status Malformed(absl::string_view source, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat("'", source, "': ", args...));
}

// Name and element size of a type code; size 0 for an unknown code.
std::pair<absl::string_view, int> DescribeType(uint8_t code) {
  switch (static_cast<IdxType>(code)) {
    case IdxType::kUnsignedByte:
      return {"unsigned byte", 1};
    case IdxType::kSignedByte:
      return {"signed byte", 1};
    case IdxType::kInt16:
      return {"int16", 2};
    case IdxType::kInt32:
      return {"int32", 4};
    case IdxType::kFloat32:
      return {"float32", 4};
    case IdxType::kFloat64:
      return {"float64", 8};
  }
  return {"unknown", 0};
}

absl::Status CheckMagic(absl::string_view bytes, absl::string_view source) {
  if (bytes.size() < 4) {
    return Malformed(source, "too short for an IDX header: ", bytes.size(),
                     " bytes, need at least 4");
  }
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  if (b[0] != 0 || b[1] != 0) {
    return Malformed(source,
                     absl::StrFormat("bad magic number 0x%02X%02X%02X%02X", b[0], b[1], b[2], b[3]),
                     ": an IDX file starts with two zero bytes (is it compressed?)");
  }
  auto [name, size] = DescribeType(b[2]);
  if (size == 0) return Malformed(source, absl::StrFormat("unknown IDX data type 0x%02X", b[2]));
  if (static_cast<IdxType>(b[2]) != IdxType::kUnsignedByte) {
    return Malformed(source,
                     absl::StrFormat("IDX data type 0x%02X (%s) is not supported; ", b[2], name),
                     "fedcl reads unsigned bytes (0x08) only");
  }
  const int num_dims = b[3];
  if (num_dims == 0) return Malformed(source, "IDX header declares zero dimensions");
  if (num_dims > kMaxIdxDims) {
    return Malformed(source, "IDX header declares ", num_dims, " dimensions, more than the ",
                     kMaxIdxDims, " allowed");
  }
  return absl::OkStatus();
}

uint32_t ReadBigEndian32(const char* p) {
  const auto* b = reinterpret_cast<const uint8_t*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// Reads the dimension sizes and returns their product (the number of one-byte values).
absl::StatusOr<uint64_t> ReadDims(absl::string_view bytes, absl::string_view source,
                                  std::vector<int64_t>* dims) {
  const int num_dims = static_cast<uint8_t>(bytes[3]);
  const size_t header_size = 4 + 4 * static_cast<size_t>(num_dims);
  if (bytes.size() < header_size) {
    return Malformed(source, "truncated header: ", num_dims, " dimensions need ", header_size,
                     " header bytes, file has ", bytes.size());
  }
  dims->resize(num_dims);
  uint64_t product = 1;
  bool overflow = false;
  for (int i = 0; i < num_dims; ++i) {
    (*dims)[i] = ReadBigEndian32(bytes.data() + 4 + 4 * i);
    overflow |= __builtin_mul_overflow(product, static_cast<uint64_t>((*dims)[i]), &product);
  }
  if (overflow || product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Malformed(source, "dimension product ", IdxDimsToString(*dims), " overflows");
  }
  return product;
}

}  // namespace

int64_t IdxArray::num_elements() const {
  // A zero dimension first: the decoder bounds the product, not the partial products before a
  // zero (dimensions 2^31 x 2^32 x 0 decode to an empty array).
  for (int64_t d : dims) {
    if (d == 0) return 0;
  }
  int64_t product = 1;
  for (int64_t d : dims) product *= d;
  return product;
}

std::string IdxDimsToString(const std::vector<int64_t>& dims) { return absl::StrJoin(dims, "x"); }

absl::StatusOr<IdxArray> DecodeIdx(absl::string_view bytes, absl::string_view source_name) {
  FEDCL_RETURN_IF_ERROR(CheckMagic(bytes, source_name));
  IdxArray array;
  array.type = static_cast<IdxType>(bytes[2]);
  FEDCL_ASSIGN_OR_RETURN(const uint64_t data_size, ReadDims(bytes, source_name, &array.dims));
  const size_t header_size = 4 + 4 * array.dims.size();
  const uint64_t available = bytes.size() - header_size;
  if (available != data_size) {
    return Malformed(source_name, available < data_size ? "truncated" : "oversized",
                     ": header says ", IdxDimsToString(array.dims), " = ", data_size,
                     " bytes of data, file has ", available, " after its ", header_size,
                     "-byte header");
  }
  array.values.resize(data_size);
  if (data_size > 0) std::memcpy(array.values.data(), bytes.data() + header_size, data_size);
  return array;
}

absl::StatusOr<IdxArray> ReadIdxFile(const base::FileSystem& fs, absl::string_view path,
                                     uint64_t max_bytes) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs.ReadFile(path, max_bytes));
  if (!IsGzip(bytes)) return DecodeIdx(bytes, path);
  FEDCL_ASSIGN_OR_RETURN(std::string inflated, Gunzip(bytes, path, max_bytes));
  return DecodeIdx(inflated, path);
}

}  // namespace fedcl::data
