// The safetensors codec (safetensors.h).
#include "proto/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <map>

#include "Eigen/Core"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "proto/json.h"
#include "proto/little_endian.h"

namespace fedcl::proto {
namespace {

uint16_t Load16(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) | (static_cast<uint8_t>(p[1]) << 8));
}

constexpr int64_t kMaxHeaderBytes = int64_t{100} << 20;  // the reference reader's limit
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53: JSON numbers arrive as doubles

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: ", what));
}

// Bytes per value of each dtype the format defines; 0 for a name it does not.
int64_t DtypeBytes(absl::string_view dtype) {
  static const std::map<std::string, int64_t, std::less<>> kBytes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = kBytes.find(dtype);
  return it == kBytes.end() ? 0 : it->second;
}

// A JSON number that must be a non-negative integer (exact in a double).
absl::StatusOr<int64_t> Integer(const google::protobuf::Value& v, absl::string_view what) {
  if (v.kind_case() != google::protobuf::Value::kNumberValue || !(v.number_value() >= 0.0) ||
      v.number_value() > kMaxExactInteger || std::floor(v.number_value()) != v.number_value()) {
    return Bad(absl::StrCat(what, " is not a non-negative integer"));
  }
  return static_cast<int64_t>(v.number_value());
}

}  // namespace

int64_t SafetensorsTensor::num_values() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes) {
  if (bytes.size() < 8)
    return Bad(absl::StrCat("the file has ", bytes.size(), " bytes, not a header"));
  const uint64_t header_bytes = LoadLittleEndian64(bytes.data());
  if (header_bytes > static_cast<uint64_t>(kMaxHeaderBytes) || header_bytes > bytes.size() - 8) {
    return Bad(absl::StrCat("the header length ", header_bytes, " is past the file's ",
                            bytes.size() - 8, " bytes or over 100 MiB"));
  }
  const absl::string_view header = bytes.substr(8, header_bytes);
  const absl::string_view data = bytes.substr(8 + header_bytes);
  google::protobuf::Struct json;
  if (absl::Status s = ParseJson(header, &json); !s.ok()) {
    return Bad(absl::StrCat("the header is not a JSON object (", s.message(), ")"));
  }
  SafetensorsFile file;
  for (const auto& [name, entry] : json.fields()) {
    if (name == "__metadata__") {
      if (entry.kind_case() != google::protobuf::Value::kStructValue)
        return Bad("__metadata__ is not an object");
      for (const auto& [key, value] : entry.struct_value().fields()) {
        if (value.kind_case() != google::protobuf::Value::kStringValue)
          return Bad(absl::StrCat("__metadata__ '", key, "' is not a string"));
        file.metadata[key] = value.string_value();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (entry.kind_case() != google::protobuf::Value::kStructValue)
      return Bad(absl::StrCat(where, " is not an object"));
    const auto& fields = entry.struct_value().fields();
    auto dtype = fields.find("dtype");
    auto shape = fields.find("shape");
    auto offsets = fields.find("data_offsets");
    if (dtype == fields.end() || dtype->second.kind_case() != google::protobuf::Value::kStringValue)
      return Bad(absl::StrCat(where, " has no string dtype"));
    if (shape == fields.end() || shape->second.kind_case() != google::protobuf::Value::kListValue)
      return Bad(absl::StrCat(where, " has no shape list"));
    if (offsets == fields.end() ||
        offsets->second.kind_case() != google::protobuf::Value::kListValue ||
        offsets->second.list_value().values_size() != 2) {
      return Bad(absl::StrCat(where, " has no data_offsets [begin, end]"));
    }
    SafetensorsTensor t;
    t.name = name;
    t.dtype = dtype->second.string_value();
    const int64_t item = DtypeBytes(t.dtype);
    if (item == 0)
      return Bad(
          absl::StrCat(where, " has dtype '", t.dtype, "', which safetensors does not define"));
    // The values the shape holds, bounded by the data before any product can overflow.
    int64_t values = 1;
    bool empty = false, too_many = false;
    const int64_t max_values = static_cast<int64_t>(data.size()) / item;
    for (const google::protobuf::Value& d : shape->second.list_value().values()) {
      FEDCL_ASSIGN_OR_RETURN(const int64_t dim, Integer(d, absl::StrCat(where, "'s shape")));
      t.shape.push_back(dim);
      if (dim == 0) {
        empty = true;
      } else if (!too_many) {
        too_many = values > max_values / dim;  // the product would pass the data (or overflow)
        if (!too_many) values *= dim;
      }
    }
    if (empty) {
      values = 0;
    } else if (too_many) {
      return Bad(absl::StrCat(where, "'s shape holds more values than the file's data"));
    }
    FEDCL_ASSIGN_OR_RETURN(const int64_t begin, Integer(offsets->second.list_value().values(0),
                                                        absl::StrCat(where, "'s data_offsets")));
    FEDCL_ASSIGN_OR_RETURN(const int64_t end, Integer(offsets->second.list_value().values(1),
                                                      absl::StrCat(where, "'s data_offsets")));
    if (begin > end || end > static_cast<int64_t>(data.size())) {
      return Bad(absl::StrCat(where, "'s data_offsets [", begin, ", ", end,
                              "] are not within the data's ", data.size(), " bytes"));
    }
    if (values > max_values || end - begin != values * item) {
      return Bad(
          absl::StrCat(where, " has ", end - begin, " bytes for ", values, " values of ", t.dtype));
    }
    t.data = data.substr(static_cast<size_t>(begin), static_cast<size_t>(end - begin));
    file.tensors.push_back(std::move(t));
  }
  // The tensors tile the data exactly: no overlap (two names for one memory), no hole.
  std::sort(file.tensors.begin(), file.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.data.data() != b.data.data() ? a.data.data() < b.data.data()
                                                    : a.data.size() < b.data.size();
            });
  const char* next = data.data();
  for (const SafetensorsTensor& t : file.tensors) {
    if (t.data.data() != next) {
      return Bad(absl::StrCat("tensor '", t.name, "' starts at byte ", t.data.data() - data.data(),
                              " where the previous one ended at ", next - data.data(),
                              " (tensors must not overlap or leave holes)"));
    }
    next += t.data.size();
  }
  if (next != data.data() + data.size()) {
    return Bad(absl::StrCat("the data has ", data.data() + data.size() - next,
                            " bytes after the last tensor"));
  }
  return file;
}

absl::StatusOr<std::vector<float>> SafetensorsFloats(const SafetensorsTensor& tensor) {
  const int64_t n = tensor.num_values();
  std::vector<float> out(static_cast<size_t>(n));
  const char* p = tensor.data.data();
  if (tensor.dtype == "F32") {
    for (int64_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(LoadLittleEndian32(p + 4 * i));
  } else if (tensor.dtype == "F64") {
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<float>(std::bit_cast<double>(LoadLittleEndian64(p + 8 * i)));
  } else if (tensor.dtype == "F16") {
    // Eigen's conversion is exact (every half is a float), as the float16 upload codec uses it.
    for (int64_t i = 0; i < n; ++i)
      out[i] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(Load16(p + 2 * i)));
  } else if (tensor.dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i)
      out[i] = std::bit_cast<float>(static_cast<uint32_t>(Load16(p + 2 * i)) << 16);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: tensor '", tensor.name, "' has dtype ", tensor.dtype,
                     "; a model's parameters take F32, F16, BF16 or F64"));
  }
  return out;
}

std::string EncodeSafetensors(absl::Span<const SafetensorsOutput> tensors,
                              const std::map<std::string, std::string>& metadata) {
  google::protobuf::Struct header;
  int64_t offset = 0;
  for (const SafetensorsOutput& t : tensors) {
    google::protobuf::Struct entry;
    (*entry.mutable_fields())["dtype"].set_string_value("F32");
    google::protobuf::ListValue* shape = (*entry.mutable_fields())["shape"].mutable_list_value();
    for (int64_t d : t.shape) shape->add_values()->set_number_value(static_cast<double>(d));
    google::protobuf::ListValue* offsets =
        (*entry.mutable_fields())["data_offsets"].mutable_list_value();
    offsets->add_values()->set_number_value(static_cast<double>(offset));
    offset += static_cast<int64_t>(t.values.size() * sizeof(float));
    offsets->add_values()->set_number_value(static_cast<double>(offset));
    *(*header.mutable_fields())[t.name].mutable_struct_value() = std::move(entry);
  }
  if (!metadata.empty()) {
    google::protobuf::Struct* meta =
        (*header.mutable_fields())["__metadata__"].mutable_struct_value();
    for (const auto& [key, value] : metadata)
      (*meta->mutable_fields())[key].set_string_value(value);
  }
  absl::StatusOr<std::string> json = PrintJson(header);
  FEDCL_CHECK_OK(json.status());  // names and metadata are the caller's UTF-8 strings
  json->append((8 - json->size() % 8) % 8, ' ');
  std::string out(8, '\0');
  StoreLittleEndian64(json->size(), out.data());
  out += *json;
  out.reserve(out.size() + static_cast<size_t>(offset));
  for (const SafetensorsOutput& t : tensors) {
    for (float v : t.values) {
      char le[4];
      StoreLittleEndian32(std::bit_cast<uint32_t>(v), le);
      out.append(le, 4);
    }
  }
  return out;
}

}  // namespace fedcl::proto
