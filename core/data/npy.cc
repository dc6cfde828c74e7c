#include "core/data/npy.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/data/gzip.h"

namespace fedcl::data {
namespace {

constexpr absl::string_view kMagic("\x93NUMPY", 6);

template <typename... Args>
absl::Status Malformed(absl::string_view source, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat("'", source, "': ", args...));
}

struct DtypeInfo {
  NpyDtype dtype;
  int size;
};

std::optional<DtypeInfo> ParseDescr(absl::string_view descr) {
  // One-byte types are written with '|' (no byte order); numpy also reads '<' for them.
  if (descr == "|u1" || descr == "<u1") return DtypeInfo{NpyDtype::kUint8, 1};
  if (descr == "|i1" || descr == "<i1") return DtypeInfo{NpyDtype::kInt8, 1};
  if (descr == "<i2") return DtypeInfo{NpyDtype::kInt16, 2};
  if (descr == "<u2") return DtypeInfo{NpyDtype::kUint16, 2};
  if (descr == "<i4") return DtypeInfo{NpyDtype::kInt32, 4};
  if (descr == "<u4") return DtypeInfo{NpyDtype::kUint32, 4};
  if (descr == "<i8") return DtypeInfo{NpyDtype::kInt64, 8};
  if (descr == "<u8") return DtypeInfo{NpyDtype::kUint64, 8};
  if (descr == "<f4") return DtypeInfo{NpyDtype::kFloat32, 4};
  return std::nullopt;
}

// The header's dict literal, read strictly: {'descr': <str>, 'fortran_order': <bool>,
// 'shape': (<int>, ...)} in any order, each key once, nothing else but whitespace around.
class HeaderParser {
 public:
  HeaderParser(absl::string_view text, absl::string_view source) : rest_(text), source_(source) {}

  absl::Status Parse(std::string* descr, bool* fortran_order, std::vector<int64_t>* shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    FEDCL_RETURN_IF_ERROR(Expect('{'));
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      FEDCL_ASSIGN_OR_RETURN(const std::string key, String());
      FEDCL_RETURN_IF_ERROR(Expect(':'));
      SkipSpace();
      if (key == "descr" && !have_descr) {
        FEDCL_ASSIGN_OR_RETURN(*descr, String());
        have_descr = true;
      } else if (key == "fortran_order" && !have_order) {
        FEDCL_ASSIGN_OR_RETURN(*fortran_order, Bool());
        have_order = true;
      } else if (key == "shape" && !have_shape) {
        FEDCL_RETURN_IF_ERROR(Tuple(shape));
        have_shape = true;
      } else {
        return Error(absl::StrCat("unexpected or repeated key '", key.substr(0, 40), "'"));
      }
      SkipSpace();
      if (Consume('}')) break;
      FEDCL_RETURN_IF_ERROR(Expect(','));
    }
    SkipSpace();
    if (!rest_.empty()) return Error("bytes after the header's closing brace");
    if (!have_descr || !have_order || !have_shape) {
      return Error("the header needs 'descr', 'fortran_order' and 'shape'");
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return Malformed(source_, "malformed .npy header: ", what);
  }
  void SkipSpace() {
    while (!rest_.empty() && (rest_[0] == ' ' || rest_[0] == '\n' || rest_[0] == '\t')) {
      rest_.remove_prefix(1);
    }
  }
  bool Consume(char c) {
    if (rest_.empty() || rest_[0] != c) return false;
    rest_.remove_prefix(1);
    return true;
  }
  absl::Status Expect(char c) {
    SkipSpace();
    if (!Consume(c)) return Error(absl::StrCat("expected '", std::string(1, c), "'"));
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> String() {
    if (rest_.empty() || (rest_[0] != '\'' && rest_[0] != '"')) return Error("expected a string");
    const char quote = rest_[0];
    const size_t end = rest_.find(quote, 1);
    if (end == absl::string_view::npos) return Error("unterminated string");
    std::string value(rest_.substr(1, end - 1));
    rest_.remove_prefix(end + 1);
    return value;
  }
  absl::StatusOr<bool> Bool() {
    if (rest_.substr(0, 4) == "True") {
      rest_.remove_prefix(4);
      return true;
    }
    if (rest_.substr(0, 5) == "False") {
      rest_.remove_prefix(5);
      return false;
    }
    return Error("expected True or False");
  }
  absl::Status Tuple(std::vector<int64_t>* shape) {
    shape->clear();
    if (!Consume('(')) return Error("expected a shape tuple");
    while (true) {
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      size_t digits = 0;
      while (digits < rest_.size() && std::isdigit(static_cast<unsigned char>(rest_[digits]))) {
        ++digits;
      }
      int64_t dim = 0;
      if (digits == 0 || digits > 18 || !absl::SimpleAtoi(rest_.substr(0, digits), &dim)) {
        return Error("a dimension is not a non-negative integer below 10^18");
      }
      rest_.remove_prefix(digits);
      if (shape->size() == 32) return Error("more than 32 dimensions");
      shape->push_back(dim);
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      if (!Consume(',')) return Error("expected ',' or ')' in the shape");
    }
  }

  absl::string_view rest_;
  const absl::string_view source_;
};

uint64_t ReadLittleEndian(const char* p, int size) {
  uint64_t v = 0;
  for (int i = size - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

int DtypeSize(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kUint8:
    case NpyDtype::kInt8:
      return 1;
    case NpyDtype::kInt16:
    case NpyDtype::kUint16:
      return 2;
    case NpyDtype::kInt32:
    case NpyDtype::kUint32:
    case NpyDtype::kFloat32:
      return 4;
    case NpyDtype::kInt64:
    case NpyDtype::kUint64:
      return 8;
  }
  return 1;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "), shape.size() == 1 ? ",)" : ")");
}

}  // namespace

absl::string_view NpyDtypeName(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kUint8:
      return "uint8";
    case NpyDtype::kInt8:
      return "int8";
    case NpyDtype::kInt16:
      return "int16";
    case NpyDtype::kUint16:
      return "uint16";
    case NpyDtype::kInt32:
      return "int32";
    case NpyDtype::kUint32:
      return "uint32";
    case NpyDtype::kInt64:
      return "int64";
    case NpyDtype::kUint64:
      return "uint64";
    case NpyDtype::kFloat32:
      return "float32";
  }
  return "unknown";
}

int64_t NpyArray::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  for (int64_t d : shape) n *= d;  // bounded by the decoder when no dimension is 0
  return n;
}

int64_t NpyArray::IntegerAt(int64_t i) const {
  const int size = DtypeSize(dtype);
  const uint64_t raw = ReadLittleEndian(bytes.data() + i * size, size);
  switch (dtype) {
    case NpyDtype::kInt8:
      return static_cast<int8_t>(raw);
    case NpyDtype::kInt16:
      return static_cast<int16_t>(raw);
    case NpyDtype::kInt32:
      return static_cast<int32_t>(raw);
    case NpyDtype::kInt64:
      return static_cast<int64_t>(raw);
    case NpyDtype::kUint64:  // beyond int64 reads as -1: no label is that large
      return raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                 ? -1
                 : static_cast<int64_t>(raw);
    default:
      return static_cast<int64_t>(raw);
  }
}

absl::StatusOr<NpyArray> DecodeNpy(absl::string_view bytes, absl::string_view source_name) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != kMagic) {
    return Malformed(source_name, "not a .npy file (it does not start with \\x93NUMPY)");
  }
  const int major = static_cast<uint8_t>(bytes[6]);
  const int minor = static_cast<uint8_t>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    return Malformed(source_name, ".npy format version ", major, ".", minor,
                     " is not supported (1.0, 2.0 and 3.0 are)");
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + length_bytes) return Malformed(source_name, "truncated .npy preamble");
  const uint64_t header_length = ReadLittleEndian(bytes.data() + 8, static_cast<int>(length_bytes));
  const uint64_t header_start = 8 + length_bytes;
  if (header_length > bytes.size() - header_start) {
    return Malformed(source_name, "truncated .npy header: it declares ", header_length,
                     " bytes, the file has ", bytes.size() - header_start, " after the preamble");
  }
  std::string descr;
  bool fortran_order = false;
  NpyArray array;
  FEDCL_RETURN_IF_ERROR(HeaderParser(bytes.substr(header_start, header_length), source_name)
                            .Parse(&descr, &fortran_order, &array.shape));
  const std::optional<DtypeInfo> info = ParseDescr(descr);
  if (!info.has_value()) {
    const bool big_endian = !descr.empty() && descr[0] == '>';
    return Malformed(source_name, "dtype '", descr.substr(0, 20), "' is not supported",
                     big_endian ? " (big-endian; save with a little-endian dtype)" : "",
                     ": fedcl reads uint8, int8 to int64, uint16 to uint64 and float32");
  }
  if (fortran_order) {
    return Malformed(
        source_name,
        "the array is in Fortran order; save it C-contiguous (numpy.ascontiguousarray)");
  }
  array.dtype = info->dtype;
  uint64_t values = 1;
  bool overflow = false;
  for (int64_t d : array.shape) overflow |= __builtin_mul_overflow(values, uint64_t(d), &values);
  uint64_t data_size = 0;
  overflow |= __builtin_mul_overflow(values, uint64_t(info->size), &data_size);
  if (overflow || data_size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Malformed(source_name, "shape ", ShapeText(array.shape), " overflows");
  }
  const uint64_t available = bytes.size() - header_start - header_length;
  if (available != data_size) {
    return Malformed(source_name, available < data_size ? "truncated" : "oversized", ": shape ",
                     ShapeText(array.shape), " of ", NpyDtypeName(array.dtype), " is ", data_size,
                     " bytes of data, the file has ", available);
  }
  array.bytes.assign(bytes.data() + header_start + header_length, data_size);
  return array;
}

absl::StatusOr<NpyArray> ReadNpyFile(const base::FileSystem& fs, absl::string_view path,
                                     uint64_t max_bytes) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs.ReadFile(path, max_bytes));
  if (!IsGzip(bytes)) return DecodeNpy(bytes, path);
  FEDCL_ASSIGN_OR_RETURN(std::string inflated, Gunzip(bytes, path, max_bytes));
  return DecodeNpy(inflated, path);
}

}  // namespace fedcl::data
