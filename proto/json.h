// JSON files through protobuf's JSON mapping, the one JSON codec of fedcl: a record is a message
// (e.g. proto/fedcl/v1/sim_report.proto), printed and parsed with the proto field names, never
// written or read by hand.
//
//   v1::SimMetricsLine line;
//   line.set_method("fedau");
//   *line.mutable_loss() = proto::JsonNumber(loss);  // null if the loss is not a number
//   FEDCL_ASSIGN_OR_RETURN(std::string text, proto::PrintJson(line));  // {"method":"fedau",...}
//
// What prints: protobuf prints the fields a message holds, in field-number order. A proto3
// scalar without `optional` is omitted when it is zero, so records whose keys must always be
// there declare their scalars `optional` and set them all. 64-bit integers print as quoted
// strings (the mapping's rule), so a record that wants a JSON number declares int32, or double
// for counts that may pass 2^31 (exact to 2^53). Doubles print in the shortest of %.15g and
// %.17g that reads back to the same value; NaN and infinities print as the strings "NaN" and
// "Infinity", so a value that may be undefined is a google.protobuf.Value (JsonNumber) and prints
// null instead.
#ifndef FEDCL_PROTO_JSON_H_
#define FEDCL_PROTO_JSON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"

namespace fedcl::proto {

enum class JsonLayout {
  kCompact,   // one line, no spaces: a line of a .jsonl file
  kIndented,  // one field or element per line, one space of indent per level
};

// `message` as JSON with the proto field names, without a final newline. InvalidArgument naming the
// field for a string that is not UTF-8 (JSON strings are), or if protobuf refuses the message
// otherwise.
absl::StatusOr<std::string> PrintJson(const google::protobuf::Message& message,
                                      JsonLayout layout = JsonLayout::kCompact);

// Parses one JSON object into `message` (cleared first). Keys the message does not declare are
// an error unless `ignore_unknown_fields` (for files another program writes and may extend).
// InvalidArgument with protobuf's description of the first problem otherwise.
absl::Status ParseJson(absl::string_view json, google::protobuf::Message* message,
                       bool ignore_unknown_fields = false);

// `value` as a JSON number, or null for NaN and infinities (JSON has neither).
google::protobuf::Value JsonNumber(double value);
// An array of JSON numbers (JsonNumber each).
google::protobuf::ListValue JsonArray(absl::Span<const double> values);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_JSON_H_
