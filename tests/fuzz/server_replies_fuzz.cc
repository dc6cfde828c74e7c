// Fuzz target: what a device decodes from a server it cannot trust (proto/wire_format.h,
// proto/tensor_convert.h): ServerInfo, GetWorkResponse and downloaded module payloads. Input: a
// selector byte, then the message's bytes.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/nn/parameter_set.h"
#include "proto/checkpoint.h"
#include "proto/federation_convert.h"
#include "proto/tensor_convert.h"
#include "proto/wire_format.h"
#include "tests/core/nn/test_models.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {

std::vector<std::pair<std::string, std::string>> Seeds() {
  v1::ServerInfo info;
  info.set_protocol("fedcl.v1");
  proto::ToProto(nn::testing::TinyConfig(nn::BackboneKind::kVit), info.mutable_model());
  info.set_backbone_digest(std::string(64, 'a'));
  info.set_max_message_bytes(4 << 20);
  info.set_chunk_bytes(1 << 20);

  fl::WorkAssignment work;
  work.action = fl::WorkAssignment::Action::kTrain;
  work.round = 4;
  work.deadline = absl::FromUnixMillis(1234567);
  work.recipe.local_steps = 3;
  work.recipe.learning_rate = 0.05f;
  work.modules.push_back({{"ssf", fl::ModuleRole::kPet, {}}, 2, 6, true});
  work.modules.push_back({{"head", fl::ModuleRole::kHead, {}}, 3, 10, false});
  v1::GetWorkResponse work_message;
  proto::ToProto(work, &work_message);

  nn::ParameterSet head("head");
  head.Add("w", {2, 4}, true);
  head.Add("b", {2}, true);
  for (int64_t i = 0; i < head.num_values(); ++i) head.flat_values()[i] = 0.1f * i - 0.3f;
  v1::ModulePayload payload;
  proto::ToProto(fl::ModuleSpec{"head", fl::ModuleRole::kHead, {}}, payload.mutable_module());
  payload.mutable_module()->set_version(5);
  proto::ToProto(head, payload.mutable_parameters());
  return {{"server-info", std::string(1, 0) + info.SerializeAsString()},
          {"work", "\x01" + work_message.SerializeAsString()},
          {"module", "\x02" + payload.SerializeAsString()},
          {"parameters", "\x03" + payload.parameters().SerializeAsString()}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  fuzz::FuzzInput input(data, size);
  const uint8_t selector = input.Byte() % 4;
  const std::string bytes(input.Rest());
  switch (selector) {
    case 0: {
      v1::ServerInfo info;
      if (info.ParseFromString(bytes)) (void)proto::ServerInfoFromProto(info);
      break;
    }
    case 1: {
      v1::GetWorkResponse work;
      if (work.ParseFromString(bytes)) (void)proto::WorkFromProto(work);
      break;
    }
    case 2: {
      absl::StatusOr<device::DownloadedModule> module = proto::ParseModulePayload(bytes, "head", 5);
      break;
    }
    case 3: {
      v1::ParameterSet set;
      if (!set.ParseFromString(bytes)) break;
      absl::StatusOr<nn::ParameterSet> decoded = proto::FromProto(set);
      if (decoded.ok()) {
        nn::ParameterSet copy = *decoded;
        if (!proto::CopyValuesFromProto(set, &copy).ok()) abort();  // what decodes, copies
      }
      break;
    }
  }
  return 0;
}
