// Linked into every fuzz target: protobuf logs each invalid UTF-8 string it parses, which
// fuzzed inputs are full of; the log would drown the fuzzer's own output and slow it down.
#include "google/protobuf/stubs/logging.h"

namespace {

const bool kProtobufQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

}  // namespace
