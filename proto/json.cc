#include "proto/json.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/util/json_util.h"

namespace fedcl::proto {
namespace {

using google::protobuf::FieldDescriptor;

// The first string field of `message` (recursively) that is not UTF-8, or empty. Protobuf's JSON
// printer would log such a field and print it empty.
std::string FirstInvalidUtf8(const google::protobuf::Message& message) {
  const google::protobuf::Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const int size = field->is_repeated() ? reflection.FieldSize(message, field) : 1;
    for (int i = 0; i < size; ++i) {
      if (field->type() == FieldDescriptor::TYPE_STRING) {
        std::string scratch;
        const std::string& value =
            field->is_repeated()
                ? reflection.GetRepeatedStringReference(message, field, i, &scratch)
                : reflection.GetStringReference(message, field, &scratch);
        if (!google::protobuf::internal::IsStructurallyValidUTF8(value)) return field->full_name();
      } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        const std::string inner =
            FirstInvalidUtf8(field->is_repeated() ? reflection.GetRepeatedMessage(message, field, i)
                                                  : reflection.GetMessage(message, field));
        if (!inner.empty()) return inner;
      }
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<std::string> PrintJson(const google::protobuf::Message& message, JsonLayout layout) {
  if (const std::string field = FirstInvalidUtf8(message); !field.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(message.GetTypeName(), " as JSON: field ", field, " is not UTF-8"));
  }
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = layout == JsonLayout::kIndented;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(message.GetTypeName(), " as JSON: ", std::string(status.message())));
  }
  if (!json.empty() && json.back() == '\n') json.pop_back();  // the indented layout ends in one
  return json;
}

absl::Status ParseJson(absl::string_view json, google::protobuf::Message* message,
                       bool ignore_unknown_fields) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = ignore_unknown_fields;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), message, options);
  if (!status.ok()) return absl::InvalidArgumentError(std::string(status.message()));
  return absl::OkStatus();
}

google::protobuf::Value JsonNumber(double value) {
  google::protobuf::Value out;
  if (std::isfinite(value)) {
    out.set_number_value(value);
  } else {
    out.set_null_value(google::protobuf::NULL_VALUE);
  }
  return out;
}

google::protobuf::ListValue JsonArray(absl::Span<const double> values) {
  google::protobuf::ListValue out;
  for (double v : values) *out.add_values() = JsonNumber(v);
  return out;
}

}  // namespace fedcl::proto
