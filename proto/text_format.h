// Strict protobuf text-format parsing for configuration files (server configs, simulator
// scenarios): an unknown field or a malformed value is an error naming its line and column,
// instead of protobuf printing to stderr.
#ifndef FEDCL_PROTO_TEXT_FORMAT_H_
#define FEDCL_PROTO_TEXT_FORMAT_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace fedcl::proto {

// Parses `text` into `message` (cleared first). InvalidArgument "line L column C: ..." on the
// first error.
absl::Status ParseTextFormat(absl::string_view text, google::protobuf::Message* message);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_TEXT_FORMAT_H_
