// Fuzz target: partial downloads kept on disk (proto/partial_downloads.h), which a device reads
// back after a restart. Input: a frame with the record (<key>.meta), a frame with the kept bytes
// (<key>.part), then framed fedcl.v1.Chunk messages that resume the download. Whatever Load
// returns holds exactly a prefix of the kept bytes that the record vouches for; what it refuses
// is deleted; a resumed payload that assembles has its announced size and CRC-32.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/base/crc32.h"
#include "core/base/memory_filesystem.h"
#include "proto/chunks.h"
#include "proto/fedcl/v1/device_state.pb.h"
#include "proto/partial_downloads.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {
namespace {
constexpr char kName[] = "backbone checkpoint";
constexpr char kDir[] = "/downloads";
}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  const std::string payload =
      "a backbone whose download was cut, kept, and resumed after a restart";
  for (int kept_chunks : {1, 3}) {
    base::MemoryFileSystem fs;
    proto::PartialDownloadStore store(fs, kDir);
    proto::ChunkAssembler assembler("backbone", 64 << 10);
    proto::ChunkSplitter splitter(payload, base::Crc32(payload), 8);
    v1::Chunk chunk;
    for (int i = 0; i < kept_chunks && splitter.Next(&chunk); ++i) {
      if (!assembler.Add(chunk).ok() || !store.Persist(kName, "v", assembler, 0).ok()) abort();
    }
    std::string input = MakeFrame(*fs.ReadFile(store.MetaPath(kName))) +
                        MakeFrame(*fs.ReadFile(store.PartPath(kName)));
    proto::ChunkSplitter rest(payload, base::Crc32(payload), 16, 8 * kept_chunks);
    while (rest.Next(&chunk)) input += MakeFrame(chunk.SerializeAsString());
    seeds.emplace_back("kept-" + std::to_string(kept_chunks), input);
  }
  return seeds;
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  constexpr int64_t kLimit = 64 << 10;
  fuzz::FuzzInput input(data, size);
  const std::string meta(input.Frame()), part(input.Frame());
  base::MemoryFileSystem fs;
  proto::PartialDownloadStore store(fs, fuzz::kDir);
  if (!fs.WriteFileAtomically(store.MetaPath(fuzz::kName), meta).ok() ||
      !fs.WriteFileAtomically(store.PartPath(fuzz::kName), part).ok()) {
    abort();
  }
  std::unique_ptr<proto::ChunkAssembler> assembler =
      store.Load(fuzz::kName, "v", "fuzzed backbone", kLimit);
  if (assembler == nullptr) {
    // Refused: nothing of it is left for the next process (a missing record keeps nothing).
    if (fs.Exists(store.MetaPath(fuzz::kName))) abort();
    return 0;
  }
  v1::PartialDownload record;
  if (!record.ParseFromString(meta)) abort();
  const absl::string_view kept = assembler->received();
  if (static_cast<int64_t>(kept.size()) != record.verified_bytes() ||
      kept != absl::string_view(part).substr(0, kept.size()) ||
      base::Crc32(kept) != record.verified_crc32() || assembler->total_bytes() > kLimit ||
      assembler->total_bytes() < assembler->received_bytes()) {
    abort();
  }
  assembler->ResumeStream();
  while (!input.empty()) {
    v1::Chunk chunk;
    if (!chunk.ParseFromString(std::string(input.Frame()))) continue;
    if (!assembler->Add(chunk).ok()) break;
  }
  absl::StatusOr<std::string> payload = assembler->Finish();
  if (payload.ok() && (static_cast<int64_t>(payload->size()) != record.total_bytes() ||
                       base::Crc32(*payload) != record.payload_crc32())) {
    abort();
  }
  return 0;
}
