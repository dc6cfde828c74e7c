// Fuzz target: what the server decodes of an upload before folding it (proto/update_codec.h):
// the UpdateHeader against a fixed pool, then each data chunk's raw framing, as SubmitReactor
// does. Input: a framed UpdateHeader, then framed raw data chunks. Whatever passes yields a
// submission whose values lie inside the staged buffer, and FindNonFinite can scan it.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/base/crc32.h"
#include "core/fl/update_validation.h"
#include "proto/update_codec.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {
namespace {

const std::vector<fl::ModuleSnapshot>& Pool() {
  static const std::vector<fl::ModuleSnapshot>* pool = [] {
    auto* modules = new std::vector<fl::ModuleSnapshot>(2);
    auto head = std::make_shared<nn::ParameterSet>("head");
    head->Add("w", {4, 3}, true);
    head->Add("b", {4}, true);
    auto ssf = std::make_shared<nn::ParameterSet>("ssf");
    ssf->Add("scale", {3}, true);
    ssf->Add("shift", {3}, true);
    (*modules)[0].spec.name = "head";
    (*modules)[0].values = head;
    (*modules)[1].spec.name = "ssf";
    (*modules)[1].values = ssf;
    return modules;
  }();
  return *pool;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  fl::LocalUpdate update;
  update.num_samples = 32;
  update.local_steps = 4;
  update.loss = 0.75;
  for (const fl::ModuleSnapshot& module : Pool()) {
    fl::ModuleUpdate delta;
    delta.name = module.spec.name;
    delta.base_version = 3;
    for (const auto& tensor : module.values->tensors()) {
      delta.layout.push_back({tensor.name, tensor.shape});
    }
    const int64_t count = fl::LayoutNumValues(delta.layout).value();
    for (int64_t i = 0; i < count; ++i) delta.values.push_back(0.25f * static_cast<float>(i) - 1);
    update.modules.push_back(std::move(delta));
  }
  v1::UpdateHeader header;
  std::string data;
  if (!proto::EncodeUpdate(17, 5, update, &header, &data).ok()) abort();
  std::string whole = MakeFrame(header.SerializeAsString());
  std::string split = whole;
  v1::UpdateChunk chunk;
  chunk.set_data(data);
  whole += MakeFrame(chunk.SerializeAsString());
  for (size_t at = 0; at < data.size(); at += 24) {
    chunk.set_data(data.substr(at, 24));
    split += MakeFrame(chunk.SerializeAsString());
  }
  return {{"one-chunk", whole}, {"many-chunks", split}};
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  fuzz::FuzzInput input(data, size);
  v1::UpdateHeader header;
  if (!header.ParseFromString(std::string(input.Frame()))) return 0;
  absl::StatusOr<proto::UpdateLayout> layout = proto::DecodeUpdateHeader(header, fuzz::Pool());
  if (!layout.ok()) return 0;
  int64_t pool_values = 0;
  for (const fl::ModuleSnapshot& m : fuzz::Pool()) pool_values += m.values->num_values();
  if (layout->total_bytes < 0 || layout->total_bytes % 4 != 0 ||
      layout->total_bytes > 4 * pool_values) {
    abort();  // the header check must bound what is staged
  }
  std::vector<float> staged(static_cast<size_t>(layout->total_bytes / 4));
  char* out = reinterpret_cast<char*>(staged.data());
  int64_t received = 0;
  uint32_t crc = 0;
  while (!input.empty()) {
    const absl::string_view chunk = input.Frame();
    absl::StatusOr<size_t> offset =
        proto::DataChunkOffset(chunk.substr(0, proto::kDataChunkPrefixBytes), chunk.size());
    if (!offset.ok()) return 0;
    const absl::string_view bytes = chunk.substr(*offset);
    if (static_cast<int64_t>(bytes.size()) > layout->total_bytes - received) return 0;
    crc = base::Crc32Copy(bytes, out + received, crc);
    received += static_cast<int64_t>(bytes.size());
  }
  if (received != layout->total_bytes || crc != header.crc32()) return 0;
  fl::UpdateSubmission submission =
      proto::SubmissionFromHeader(header, *layout, absl::MakeSpan(staged));
  (void)fl::FindNonFinite(submission);
  (void)fl::SquaredNorm(submission);
  return 0;
}
