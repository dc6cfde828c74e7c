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
namespace {

std::string Hex32(uint32_t value) { return absl::StrCat("0x", absl::Hex(value, absl::kZeroPad8)); }

// A lying header must not make us allocate its claim up front; larger payloads grow as they come.
constexpr int64_t kMaxReserveBytes = int64_t{64} << 20;

}  // namespace

ChunkAssembler::ChunkAssembler(std::string what, int64_t max_bytes)
    : what_(std::move(what)), max_bytes_(max_bytes) {}

absl::Status ChunkAssembler::Fail(absl::Status status) {
  error_ = std::move(status);
  return error_;
}

absl::Status ChunkAssembler::Add(const v1::Chunk& chunk) {
  if (!error_.ok()) return error_;
  const int64_t size = static_cast<int64_t>(chunk.data().size());
  if (!started_) {
    if (chunk.offset() != 0) {
      return Fail(absl::DataLossError(
          absl::StrCat("download of ", what_, " starts at offset ", chunk.offset(), ", not 0")));
    }
    if (chunk.total_bytes() < 0) {
      return Fail(absl::DataLossError(
          absl::StrCat("download of ", what_, " announces ", chunk.total_bytes(), " bytes")));
    }
    if (chunk.total_bytes() > max_bytes_) {
      return Fail(absl::FailedPreconditionError(
          absl::StrCat("download of ", what_, " has ", chunk.total_bytes(),
                       " bytes, more than the client's limit of ", max_bytes_)));
    }
    started_ = true;
    total_bytes_ = chunk.total_bytes();
    expected_crc_ = chunk.crc32();
    bytes_.reserve(static_cast<size_t>(std::min(total_bytes_, kMaxReserveBytes)));
  } else if (chunk.total_bytes() != 0 && chunk.total_bytes() != total_bytes_) {
    return Fail(absl::DataLossError(absl::StrCat("download of ", what_, " announced ", total_bytes_,
                                                 " bytes, then ", chunk.total_bytes())));
  }
  if (chunk.offset() != received_bytes()) {
    return Fail(absl::DataLossError(absl::StrCat(
        "download of ", what_, ": a chunk at offset ", chunk.offset(), " where ", received_bytes(),
        " was expected (", chunk.offset() > received_bytes() ? "a gap" : "an overlap", ")")));
  }
  if (size > total_bytes_ - received_bytes()) {
    return Fail(absl::DataLossError(absl::StrCat("download of ", what_, " has more than the ",
                                                 total_bytes_, " bytes it announced")));
  }
  bytes_.append(chunk.data());
  return absl::OkStatus();
}

absl::StatusOr<std::string> ChunkAssembler::Finish() {
  if (!error_.ok()) return error_;
  if (!started_) {
    return Fail(absl::DataLossError(absl::StrCat("download of ", what_, " ended before any data")));
  }
  if (received_bytes() != total_bytes_) {
    return Fail(absl::DataLossError(absl::StrCat(
        "download of ", what_, " ended after ", received_bytes(), " of ", total_bytes_, " bytes")));
  }
  const uint32_t crc = base::Crc32(bytes_);
  if (crc != expected_crc_) {
    return Fail(
        absl::DataLossError(absl::StrCat("download of ", what_, " is damaged: CRC-32 announced ",
                                         Hex32(expected_crc_), ", computed ", Hex32(crc))));
  }
  return std::move(bytes_);
}

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
  }
  return work;
}

absl::StatusOr<device::DownloadedModule> ParseModulePayload(absl::string_view bytes, absl::string_view name,
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

absl::Status EncodeUpdate(fl::ClientId client, int64_t round, const fl::LocalUpdate& update,
                          v1::UpdateHeader* header, std::string* data) {
  if (update.modules.empty()) return absl::InvalidArgumentError("the update has no modules");
  header->Clear();
  header->set_client_id(client);
  header->set_round(round);
  header->set_num_samples(update.num_samples);
  header->set_local_steps(update.local_steps);
  header->set_loss(update.loss);
  size_t floats = 0;
  for (const fl::ModuleUpdate& module : update.modules) {
    int64_t expected = 0;
    for (const fl::TensorSpec& spec : module.layout) expected += nn::NumElements(spec.shape);
    if (expected != static_cast<int64_t>(module.values.size())) {
      return absl::InvalidArgumentError(absl::StrCat("module '", module.name, "' has ",
                                                     module.values.size(),
                                                     " values; its layout holds ", expected));
    }
    v1::ModuleDelta* delta = header->add_modules();
    delta->set_name(module.name);
    delta->set_base_version(module.base_version);
    proto::LayoutToProto(module.layout, delta->mutable_layout());
    floats += module.values.size();
  }
  data->resize(floats * sizeof(float));
  char* out = data->data();
  for (const fl::ModuleUpdate& module : update.modules) {
    for (float value : module.values) {
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof(bits));
      proto::StoreLittleEndian32(bits, out);
      out += sizeof(bits);
    }
  }
  header->set_total_bytes(static_cast<int64_t>(data->size()));
  header->set_crc32(base::Crc32(*data));
  return absl::OkStatus();
}

}  // namespace fedcl::proto
