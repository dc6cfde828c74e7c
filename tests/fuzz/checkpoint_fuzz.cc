// Fuzz target: checkpoints as a device downloads them and a server or tool reads them from disk
// (proto/checkpoint.h, proto/envelope.h). Input: a selector byte, then either a checksummed
// envelope (even selector) or a bare ModelCheckpoint message (odd: past the envelope's CRC, where
// a mutation reaches the config and tensor checks). A checkpoint that loads has a model and
// modules that run.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/base/random.h"
#include "core/nn/model.h"
#include "core/peft/pet_module.h"
#include "proto/checkpoint.h"
#include "proto/envelope.h"
#include "tests/core/nn/test_models.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  for (nn::BackboneKind kind : nn::testing::AllBackbones()) {
    auto model = nn::Model::Create(nn::testing::TinyConfig(kind), 3);
    if (!model.ok()) abort();
    std::vector<std::unique_ptr<peft::PetModule>> modules;
    base::Rng rng(4);
    for (peft::PetKind pet : {peft::PetKind::kSsf, peft::PetKind::kLora, peft::PetKind::kAdapter}) {
      if (kind != nn::BackboneKind::kVit && pet != peft::PetKind::kSsf) continue;
      peft::PetConfig config;
      config.kind = pet;
      config.adapter_bottleneck = 2;
      config.lora_rank = 2;
      auto module = peft::PetModule::Create(std::string(peft::PetKindName(pet)), config,
                                            (*model)->backbone(), rng);
      if (!module.ok()) abort();
      modules.push_back(*std::move(module));
    }
    std::vector<const peft::PetModule*> pointers;
    for (const auto& m : modules) pointers.push_back(m.get());
    v1::ModelCheckpoint message;
    if (!proto::ToCheckpointProto(**model, pointers, {}, &message).ok()) abort();
    const std::string name = nn::testing::KindName(kind);
    seeds.emplace_back(name + "-bare", "\x01" + message.SerializeAsString());
    seeds.emplace_back(
        name + "-envelope",
        std::string(1, 0) +
            proto::EncodeEnvelope(proto::PayloadKind::kModelCheckpoint, message).value());
  }
  return seeds;
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  fuzz::FuzzInput input(data, size);
  const bool bare = input.Byte() & 1;
  const absl::string_view bytes = input.Rest();
  v1::ModelCheckpoint message;
  if (bare) {
    if (!message.ParseFromString(std::string(bytes))) return 0;
  } else if (!proto::DecodeEnvelope(bytes, "fuzz", proto::PayloadKind::kModelCheckpoint, &message)
                  .ok()) {
    return 0;
  }
  absl::StatusOr<proto::LoadedCheckpoint> loaded = proto::FromCheckpointProto(message, "fuzz");
  if (!loaded.ok()) return 0;
  const nn::ModelConfig& config = loaded->model->config();
  nn::Matrix images = nn::Matrix::Constant(
      2, config.image_channels * config.image_height * config.image_width, 0.5f);
  const nn::Matrix& logits = loaded->model->Forward(images, /*training=*/false);
  if (logits.rows() != 2 || logits.cols() != config.num_classes) abort();
  return 0;
}
