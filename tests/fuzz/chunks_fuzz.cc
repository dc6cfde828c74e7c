// Fuzz target: the download chunk assembler (proto/chunks.h). Input: framed fedcl.v1.Chunk
// messages, fed in order to one assembler with a 64 KiB limit; an empty frame ends a stream early
// and the next chunk resumes the download (ChunkAssembler::ResumeStream). An assembled payload
// always has the size and CRC its first chunk announced.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/base/crc32.h"
#include "proto/chunks.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {

std::vector<std::pair<std::string, std::string>> Seeds() {
  std::vector<std::pair<std::string, std::string>> seeds;
  for (int chunk_bytes : {7, 64, 1000}) {
    const std::string payload = "a payload split into chunks by the server's ChunkSplitter";
    proto::ChunkSplitter splitter(payload, base::Crc32(payload), chunk_bytes);
    v1::Chunk chunk;
    std::string input;
    while (splitter.Next(&chunk)) input += MakeFrame(chunk.SerializeAsString());
    seeds.emplace_back("split-" + std::to_string(chunk_bytes), input);
  }
  // Cut after two chunks of 7 bytes, resumed in chunks of 16.
  const std::string payload = "a payload whose download was cut and then resumed";
  proto::ChunkSplitter first(payload, base::Crc32(payload), 7);
  v1::Chunk chunk;
  std::string input;
  for (int i = 0; i < 2 && first.Next(&chunk); ++i) input += MakeFrame(chunk.SerializeAsString());
  input += MakeFrame("");
  proto::ChunkSplitter rest(payload, base::Crc32(payload), 16, 14);
  while (rest.Next(&chunk)) input += MakeFrame(chunk.SerializeAsString());
  seeds.emplace_back("resumed", input);
  return seeds;
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fedcl;
  constexpr int64_t kLimit = 64 << 10;
  fuzz::FuzzInput input(data, size);
  proto::ChunkAssembler assembler("fuzzed payload", kLimit);
  v1::Chunk first;
  bool have_first = false;
  while (!input.empty()) {
    const absl::string_view frame = input.Frame();
    if (frame.empty()) {
      assembler.ResumeStream();
      continue;
    }
    v1::Chunk chunk;
    if (!chunk.ParseFromString(std::string(frame))) continue;
    if (!have_first) first = chunk, have_first = true;
    if (!assembler.Add(chunk).ok()) break;
    if (assembler.received_bytes() > kLimit) abort();
  }
  absl::StatusOr<std::string> payload = assembler.Finish();
  if (payload.ok() && (static_cast<int64_t>(payload->size()) != first.total_bytes() ||
                       base::Crc32(*payload) != first.crc32())) {
    abort();
  }
  return 0;
}
