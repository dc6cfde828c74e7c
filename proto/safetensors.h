// The safetensors format (what PyTorch users save with safetensors.torch.save_file), read and
// written: fedcl-import and fedcl-export (tools/model_io) are built on it.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON, then the data. The JSON is
// an object: each tensor's name maps to {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}
// (byte offsets into the data), and "__metadata__", if present, to an object of strings. The
// header is read with protobuf's JSON parser (into google.protobuf.Struct), never by hand.
//
//   FEDCL_ASSIGN_OR_RETURN(proto::SafetensorsFile file, proto::ParseSafetensors(bytes));
//   for (const proto::SafetensorsTensor& t : file.tensors) {
//     FEDCL_ASSIGN_OR_RETURN(std::vector<float> values, proto::SafetensorsFloats(t));
//   }
//   std::string out = proto::EncodeSafetensors(tensors, {{"format", "pt"}});
//
// Parsing trusts nothing and refuses, with InvalidArgument naming the tensor or the field: a
// header length past the file or over 100 MiB, a header that is not a JSON object, a tensor
// entry without a string dtype, a shape of non-negative integers, or two integer offsets, a
// dtype safetensors does not define, offsets outside the data or that do not match the shape's
// bytes, tensors that overlap or leave a hole (the data must be exactly the tensors'), and
// metadata that is not an object of strings.
#ifndef FEDCL_PROTO_SAFETENSORS_H_
#define FEDCL_PROTO_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedcl::proto {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // as the file names it: "F32", "F16", "BF16", "F64", "I64", ...
  std::vector<int64_t> shape;
  absl::string_view data;  // into the parsed bytes, little-endian
  int64_t num_values() const;
};

struct SafetensorsFile {
  std::vector<SafetensorsTensor> tensors;  // in the order of their data
  std::map<std::string, std::string> metadata;
};

// The tensors of `bytes` (which must outlive the result: the tensors' data point into it).
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view bytes);

// A tensor's values as float32: F32 as is, F16 and BF16 exactly, F64 rounded to nearest.
// InvalidArgument naming the tensor and its dtype for the others (integers, booleans, FP8),
// which no fedcl parameter takes.
absl::StatusOr<std::vector<float>> SafetensorsFloats(const SafetensorsTensor& tensor);

// A float32 tensor to write.
struct SafetensorsOutput {
  std::string name;
  std::vector<int64_t> shape;
  absl::Span<const float> values;  // row-major, shape's product of them
};

// The file of `tensors` (F32, in this order, names unique and not "__metadata__") with
// `metadata`. The header is padded with spaces to a multiple of 8 bytes, as the reference
// writer does, so that the data is aligned.
std::string EncodeSafetensors(absl::Span<const SafetensorsOutput> tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_SAFETENSORS_H_
