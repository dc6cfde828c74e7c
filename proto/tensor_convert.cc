#include "proto/tensor_convert.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/base/status_macros.h"
#include "proto/little_endian.h"

namespace fedcl::proto {
namespace {

// The wire format is IEEE 754 binary32, little-endian. Hosts of either byte order are supported
// (big-endian ones swap bytes); anything else would need a real conversion.
static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4,
              "fedcl's wire format needs IEEE 754 binary32 floats");
static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "mixed-endian hosts are not supported");

constexpr int64_t kFloat32Bytes = 4;
// Largest element count whose byte size still fits in int64.
constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / kFloat32Bytes;
// Exponent bits of a binary32; all set means infinity or NaN.
constexpr uint32_t kExponentMask = 0x7f800000u;

using TensorShape = google::protobuf::RepeatedField<int64_t>;

void EncodeFloats(const float* values, int64_t count, std::string* out) {
  if constexpr (std::endian::native == std::endian::little) {
    out->assign(reinterpret_cast<const char*>(values), count * kFloat32Bytes);
  } else {
    out->resize(count * kFloat32Bytes);
    for (int64_t i = 0; i < count; ++i) {
      StoreLittleEndian32(std::bit_cast<uint32_t>(values[i]), out->data() + i * kFloat32Bytes);
    }
  }
}

// `bytes` holds a whole number of floats (checked by ValidateTensor).
void DecodeFloats(const std::string& bytes, float* out) {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out, bytes.data(), bytes.size());
  } else {
    for (size_t i = 0; i < bytes.size() / kFloat32Bytes; ++i) {
      out[i] = std::bit_cast<float>(LoadLittleEndian32(bytes.data() + i * kFloat32Bytes));
    }
  }
}

std::string ShapeString(const TensorShape& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// InvalidArgument "tensor 'w' (index 2) of parameter set 'm': <problem>".
template <typename... Problem>
absl::Status TensorError(const v1::ParameterSet& message, int index, const Problem&... problem) {
  return absl::InvalidArgumentError(absl::StrCat("tensor '", message.tensors(index).name(),
                                                 "' (index ", index, ") of parameter set '",
                                                 message.name(), "': ", problem...));
}

absl::StatusOr<int64_t> ElementCount(const v1::ParameterSet& message, int index) {
  const TensorShape& shape = message.tensors(index).shape();
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim <= 0) {
      return TensorError(message, index, "shape ", ShapeString(shape),
                         " has a dimension that is not positive");
    }
    if (count > kMaxElements / dim) {
      return TensorError(message, index, "shape ", ShapeString(shape),
                         " has too many elements (the count overflows)");
    }
    count *= dim;
  }
  return count;
}

absl::Status CheckFinite(const v1::ParameterSet& message, int index) {
  const std::string& data = message.tensors(index).data();
  for (size_t i = 0; i < data.size() / kFloat32Bytes; ++i) {
    uint32_t bits = LoadLittleEndian32(data.data() + i * kFloat32Bytes);
    if ((bits & kExponentMask) == kExponentMask) {
      return TensorError(message, index, "element ", i, " is not finite (",
                         std::bit_cast<float>(bits), ")");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTensor(const v1::ParameterSet& message, int index,
                            const DecodeOptions& options) {
  const v1::Tensor& tensor = message.tensors(index);
  if (tensor.name().empty()) return TensorError(message, index, "the name is empty");
  if (tensor.dtype() == v1::DTYPE_UNSPECIFIED) {
    return TensorError(message, index, "the dtype is not set (DTYPE_UNSPECIFIED)");
  }
  if (tensor.dtype() != v1::DTYPE_FLOAT32) {
    return TensorError(message, index, "unsupported dtype ", static_cast<int>(tensor.dtype()),
                       " (this build reads DTYPE_FLOAT32 only)");
  }
  FEDCL_ASSIGN_OR_RETURN(int64_t count, ElementCount(message, index));
  if (static_cast<uint64_t>(tensor.data().size()) != static_cast<uint64_t>(count) * kFloat32Bytes) {
    return TensorError(message, index, "data has ", tensor.data().size(), " bytes, expected ",
                       count * kFloat32Bytes, " (", count, " float32 values of shape ",
                       ShapeString(tensor.shape()), ")");
  }
  if (options.require_finite) FEDCL_RETURN_IF_ERROR(CheckFinite(message, index));
  return absl::OkStatus();
}

absl::Status ValidateMessage(const v1::ParameterSet& message, const DecodeOptions& options) {
  absl::flat_hash_map<absl::string_view, int> index_by_name;
  for (int i = 0; i < message.tensors_size(); ++i) {
    FEDCL_RETURN_IF_ERROR(ValidateTensor(message, i, options));
    auto [it, inserted] = index_by_name.emplace(message.tensors(i).name(), i);
    if (!inserted) {
      return TensorError(message, i, "the name is already used by tensor ", it->second);
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSameLayout(const v1::ParameterSet& message, const nn::ParameterSet& set) {
  if (message.tensors_size() != set.num_tensors()) {
    return absl::InvalidArgumentError(absl::StrCat("parameter set '", message.name(), "' has ",
                                                   message.tensors_size(), " tensors, expected ",
                                                   set.num_tensors(), " as in '", set.name(), "'"));
  }
  for (int i = 0; i < set.num_tensors(); ++i) {
    const v1::Tensor& tensor = message.tensors(i);
    const nn::TensorInfo& info = set.info(i);
    if (tensor.name() != info.name) {
      return TensorError(message, i, "expected tensor '", info.name, "' at this index as in '",
                         set.name(), "'");
    }
    if (!std::equal(tensor.shape().begin(), tensor.shape().end(), info.shape.begin(),
                    info.shape.end())) {
      return TensorError(message, i, "shape ", ShapeString(tensor.shape()), ", expected ",
                         nn::ShapeToString(info.shape), " as in '", set.name(), "'");
    }
  }
  return absl::OkStatus();
}

}  // namespace

void ToProto(const nn::ParameterSet& set, v1::ParameterSet* message) {
  message->Clear();
  message->set_name(set.name());
  message->mutable_tensors()->Reserve(set.num_tensors());
  for (int i = 0; i < set.num_tensors(); ++i) {
    const nn::TensorInfo& info = set.info(i);
    v1::Tensor* tensor = message->add_tensors();
    tensor->set_name(info.name);
    tensor->mutable_shape()->Add(info.shape.begin(), info.shape.end());
    tensor->set_dtype(v1::DTYPE_FLOAT32);
    EncodeFloats(set.values(i), info.size, tensor->mutable_data());
    tensor->set_trainable(info.trainable);
  }
}

absl::StatusOr<nn::ParameterSet> FromProto(const v1::ParameterSet& message,
                                           const DecodeOptions& options) {
  FEDCL_RETURN_IF_ERROR(ValidateMessage(message, options));
  nn::ParameterSet set(message.name());
  for (const v1::Tensor& tensor : message.tensors()) {
    set.Add(tensor.name(), nn::Shape(tensor.shape().begin(), tensor.shape().end()),
            tensor.trainable());
  }
  for (int i = 0; i < set.num_tensors(); ++i)
    DecodeFloats(message.tensors(i).data(), set.values(i));
  return set;
}

absl::Status CopyValuesFromProto(const v1::ParameterSet& message, nn::ParameterSet* into,
                                 const DecodeOptions& options) {
  // Every check comes before the first write: a rejected update must leave `into` as it was.
  FEDCL_RETURN_IF_ERROR(ValidateMessage(message, options));
  FEDCL_RETURN_IF_ERROR(CheckSameLayout(message, *into));
  for (int i = 0; i < into->num_tensors(); ++i) {
    DecodeFloats(message.tensors(i).data(), into->values(i));
  }
  return absl::OkStatus();
}

}  // namespace fedcl::proto
