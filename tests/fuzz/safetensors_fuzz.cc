// Fuzz target: the safetensors decoder (proto/safetensors.h) and fedcl-import's checks on what it
// decoded (tools/model_io/model_io.h). Input: a whole file. A parsed file's tensors tile its data
// exactly and decode to their shape's number of values; an import either refuses or builds the
// model with every value finite.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/base/random.h"
#include "proto/safetensors.h"
#include "tests/fuzz/fuzz_target.h"
#include "tools/model_io/model_io.h"

namespace fedcl::fuzz {
namespace {

// A small MLP on 2×2 images, so that fuzzed files can fit it.
nn::ModelConfig SmallMlp() {
  nn::ModelConfig config;
  config.backbone = nn::BackboneKind::kMlp;
  config.mlp.hidden = {3};
  config.image_channels = 1;
  config.image_height = 2;
  config.image_width = 2;
  config.num_classes = 2;
  return config;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  auto model = nn::Model::Create(SmallMlp(), 3);
  if (!model.ok()) abort();
  auto exported = model_io::ExportSafetensors(*std::move(model), {});
  if (!exported.ok()) abort();
  const float values[] = {1.0f, -2.0f, 0.5f};
  const std::string plain = proto::EncodeSafetensors({{"t", {3}, values}}, {{"format", "pt"}});
  return {{"small-mlp", *exported}, {"one-tensor", plain}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<proto::SafetensorsFile> file = proto::ParseSafetensors(bytes);
  if (!file.ok()) return 0;
  int64_t covered = 0;
  for (const proto::SafetensorsTensor& t : file->tensors) {
    covered += static_cast<int64_t>(t.data.size());
    absl::StatusOr<std::vector<float>> values = proto::SafetensorsFloats(t);
    if (values.ok() && static_cast<int64_t>(values->size()) != t.num_values()) abort();
  }
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | data[i];
  if (covered != static_cast<int64_t>(size - 8 - header)) abort();
  absl::StatusOr<std::unique_ptr<nn::Model>> model =
      model_io::ImportSafetensors(bytes, {.config = fuzz::SmallMlp(), .rename = {}});
  if (model.ok()) {
    for (nn::ParameterSet* set :
         {&(*model)->backbone().parameters(), &(*model)->head().parameters()})
      if (!set->flat_values().allFinite()) abort();
  }
  return 0;
}
