#include "proto/wire_format.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/federation_convert.h"
#include "proto/little_endian.h"
#include "proto/tensor_convert.h"

namespace fedcl::proto {
namespace {}  // namespace

absl::StatusOr<device::ServerInfo> ServerInfoFromProto(const v1::ServerInfo& message) {
  device::ServerInfo info;
  info.protocol = message.protocol();
  absl::StatusOr<nn::ModelConfig> model = proto::FromProto(message.model());
  if (!model.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server describes an invalid model: ", model.status().message()));
  }
  info.model = *std::move(model);
  info.backbone_digest = message.backbone_digest();
  info.max_message_bytes = message.max_message_bytes();
  info.chunk_bytes = message.chunk_bytes();
  return info;
}

absl::StatusOr<fl::WorkAssignment> WorkFromProto(const v1::GetWorkResponse& message) {
  fl::WorkAssignment work;
  switch (message.action()) {
    case v1::GetWorkResponse::ACTION_TRAIN:
      work.action = fl::WorkAssignment::Action::kTrain;
      break;
    case v1::GetWorkResponse::ACTION_WAIT:
      work.action = fl::WorkAssignment::Action::kWait;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("the server asked for unknown action ", message.action()));
  }
  work.round = message.round();
  work.deadline = absl::FromUnixMillis(message.deadline_unix_ms());
  work.retry_after = absl::Milliseconds(message.retry_after_ms());
  if (work.action == fl::WorkAssignment::Action::kTrain) {
    FEDCL_ASSIGN_OR_RETURN(work.recipe, proto::FromProto(message.recipe()));
  }
  for (const v1::ModuleDescriptor& d : message.modules()) {
    absl::StatusOr<fl::ModuleSpec> spec = proto::SpecFromProto(d);
    if (!spec.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("module '", d.name(), "' of the work: ", spec.status().message()));
    }
    work.modules.push_back(
        {*std::move(spec), d.version(), d.num_values(), d.download(), d.has_descriptor()});
    if (!d.upload_compression().empty()) {
      absl::StatusOr<fl::CompressionSpec> upload = fl::ParseCompressionSpec(d.upload_compression());
      if (!upload.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("module '", d.name(), "' of the work: ", upload.status().message()));
      }
      work.modules.back().upload = *upload;
    }
  }
  return work;
}

absl::StatusOr<device::DownloadedModule> ParseModulePayload(absl::string_view bytes,
                                                            absl::string_view name,
                                                            int64_t version) {
  v1::ModulePayload payload;
  if (!payload.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(
        absl::StrCat("downloaded module '", name, "' does not parse as a ModulePayload"));
  }
  if (payload.module().name() != name || payload.module().version() != version) {
    return absl::InvalidArgumentError(
        absl::StrCat("asked for module '", name, "' version ", version, " and received '",
                     payload.module().name(), "' version ", payload.module().version()));
  }
  device::DownloadedModule module;
  absl::StatusOr<fl::ModuleSpec> spec = proto::SpecFromProto(payload.module());
  if (!spec.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("downloaded module '", name, "': ", spec.status().message()));
  }
  module.spec = *std::move(spec);
  module.version = version;
  absl::StatusOr<nn::ParameterSet> values = proto::FromProto(payload.parameters());
  if (!values.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("downloaded module '", name, "': ", values.status().message()));
  }
  module.values = *std::move(values);
  if (payload.descriptor_tensors().tensors_size() > 0) {
    absl::StatusOr<nn::ParameterSet> descriptor = proto::FromProto(payload.descriptor_tensors());
    if (!descriptor.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "downloaded module '", name, "' descriptor: ", descriptor.status().message()));
    }
    module.descriptor = *std::move(descriptor);
  }
  return module;
}

}  // namespace fedcl::proto
