// Fuzz target: what the server decodes of an upload before folding it (proto/update_codec.h):
// the UpdateHeader against a fixed pool, then each data chunk's raw framing, as SubmitReactor
// does, then the decoding of compressed deltas (proto/compressed_payload.h). Input: a framed
// UpdateHeader, then framed raw data chunks. Whatever passes yields a submission whose values lie
// inside the staged buffer, and FindNonFinite can scan it.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

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

// An upload of every pooled module, each delta encoded with its codec ("float32": as is).
std::string Upload(const std::vector<std::string>& codecs, size_t chunk_bytes) {
  fl::LocalUpdate update;
  update.num_samples = 32;
  update.local_steps = 4;
  update.loss = 0.75;
  for (size_t m = 0; m < Pool().size(); ++m) {
    const fl::ModuleSnapshot& module = Pool()[m];
    fl::ModuleUpdate delta;
    delta.name = module.spec.name;
    delta.base_version = 3;
    for (const auto& tensor : module.values->tensors()) {
      delta.layout.push_back({tensor.name, tensor.shape});
    }
    const int64_t count = fl::LayoutNumValues(delta.layout).value();
    for (int64_t i = 0; i < count; ++i) delta.values.push_back(0.25f * static_cast<float>(i) - 1);
    const fl::CompressionSpec spec = fl::ParseCompressionSpec(codecs[m]).value();
    if (spec.compresses()) delta.compressed = fl::Compress(delta.values, spec);
    update.modules.push_back(std::move(delta));
  }
  v1::UpdateHeader header;
  std::string data;
  if (!proto::EncodeUpdate(17, 5, update, &header, &data).ok()) abort();
  std::string framed = MakeFrame(header.SerializeAsString());
  v1::UpdateChunk chunk;
  for (size_t at = 0; at < data.size(); at += chunk_bytes) {
    chunk.set_data(data.substr(at, chunk_bytes));
    framed += MakeFrame(chunk.SerializeAsString());
  }
  return framed;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  return {{"one-chunk", Upload({"float32", "float32"}, 1 << 20)},
          {"many-chunks", Upload({"float32", "float32"}, 24)},
          {"int8-and-float16", Upload({"int8:8", "float16"}, 1 << 20)},
          {"topk-and-float32", Upload({"topk:0.5:8", "float32"}, 10)}};
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
  // The header check must bound what is staged: the values of the pool at most, and at most the
  // bytes the costliest codec takes for them (top-k of all values: 5 + 1 + 4/8 bytes a value).
  if (layout->total_values < 0 || layout->total_values > pool_values || layout->total_bytes < 0 ||
      layout->total_bytes > 7 * pool_values) {
    abort();
  }
  if (!layout->compressed && layout->total_bytes != 4 * layout->total_values) abort();
  std::vector<float> staged(static_cast<size_t>(layout->total_values));
  std::string bytes_in;
  int64_t received = 0;
  while (!input.empty()) {
    const absl::string_view chunk = input.Frame();
    absl::StatusOr<size_t> offset =
        proto::DataChunkOffset(chunk.substr(0, proto::kDataChunkPrefixBytes), chunk.size());
    if (!offset.ok()) return 0;
    const absl::string_view bytes = chunk.substr(*offset);
    if (static_cast<int64_t>(bytes.size()) > layout->total_bytes - received) return 0;
    bytes_in.append(bytes.data(), bytes.size());
    received += static_cast<int64_t>(bytes.size());
  }
  if (received != layout->total_bytes) return 0;
  // The CRC (not checked here) guards against damage, not against a hostile client, which
  // computes it: the decoding must hold whatever the bytes.
  if (layout->compressed) {
    if (!proto::DecodeUpdatePayload(*layout, bytes_in, absl::MakeSpan(staged)).ok()) return 0;
  } else {
    std::memcpy(staged.data(), bytes_in.data(), bytes_in.size());
  }
  fl::UpdateSubmission submission =
      proto::SubmissionFromHeader(header, *layout, absl::MakeSpan(staged));
  (void)fl::FindNonFinite(submission);
  (void)fl::SquaredNorm(submission);
  return 0;
}
