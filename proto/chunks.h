// Chunked payloads of the fedcl.v1 wire format (DownloadBackbone, DownloadModule): a stream of
// Chunk messages, each with the CRC-32 of its data, the first carrying the payload's total size
// and CRC-32. The server splits (ChunkSplitter), the device reassembles and checks
// (ChunkAssembler):
//
//   ChunkSplitter splitter(payload, base::Crc32(payload), chunk_bytes);   // server
//   while (splitter.Next(&chunk)) Write(chunk);
//
//   ChunkAssembler assembler("backbone", options.max_download_bytes);      // device
//   while (reader->Read(&chunk)) FEDCL_RETURN_IF_ERROR(assembler.Add(chunk));
//   FEDCL_ASSIGN_OR_RETURN(std::string bytes, assembler.Finish());
//
// A stream cut short leaves the assembler with the chunks that arrived whole and verified; the
// device asks for the rest from assembler.received_bytes() (the request's `offset`), the server
// splits from there (ChunkSplitter's `offset`), and the assembler takes the new stream after
// ResumeStream(), checking that it continues the same payload.
//
// The assembler treats everything as untrusted: it checks whatever a damaged, truncated or
// lying transfer could get wrong before it grows anything.
#ifndef FEDCL_PROTO_CHUNKS_H_
#define FEDCL_PROTO_CHUNKS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace fedcl::proto {

// Splits one payload into chunks of at most `chunk_bytes` (> 0). Not thread-safe.
class ChunkSplitter {
 public:
  // `payload` must outlive the splitter; `crc32` is its CRC-32 (base::Crc32). The chunks start at
  // byte `offset` (in [0, payload size]), and the first of them announces the whole payload.
  ChunkSplitter(absl::string_view payload, uint32_t crc32, int64_t chunk_bytes, int64_t offset = 0);
  // Fills `chunk` with the next piece and returns true, or returns false once every byte was
  // given. An empty rest is one empty chunk (announcing the payload).
  bool Next(v1::Chunk* chunk);

 private:
  const absl::string_view payload_;
  const uint32_t crc32_;
  const int64_t chunk_bytes_;
  int64_t offset_ = 0;
  bool started_ = false;
};

// Reassembles one chunked download. Not thread-safe.
class ChunkAssembler {
 public:
  // `what` names the payload in error messages ("backbone", "module 'head' version 3"); a
  // payload announcing more than `max_bytes` is refused.
  ChunkAssembler(std::string what, int64_t max_bytes);
  // An assembler that has received `prefix` of a payload of `total_bytes` with CRC-32 `crc32`
  // (a partial download kept on disk, proto/partial_downloads.h): ready for ResumeStream and the
  // chunks from prefix.size(). InvalidArgument unless prefix.size() <= total_bytes <= max_bytes.
  static absl::StatusOr<std::unique_ptr<ChunkAssembler>> Resume(std::string what, int64_t max_bytes,
                                                                int64_t total_bytes, uint32_t crc32,
                                                                std::string prefix);

  // Accepts the next chunk. The first must start at offset 0 and announce the total size; each
  // later one must start where the previous ended, and its data match its chunk_crc32. Errors,
  // after which every call fails:
  //   DataLoss            a first chunk not at offset 0, a negative total, a gap or overlap
  //                       (offset other than the bytes received so far), more bytes than
  //                       announced, a later chunk announcing a different total, a chunk whose
  //                       data do not match its CRC-32, or a resumed stream announcing another
  //                       payload (payload_changed(): start again with a new assembler).
  //   FailedPrecondition  a total above `max_bytes` (raise the client's limit; retrying is
  //                       pointless).
  absl::Status Add(const v1::Chunk& chunk);

  // The previous stream ended early; the next chunk starts another, from received_bytes(), which
  // must announce the same total size and CRC-32 as the first.
  void ResumeStream() { resuming_ = started_; }
  // True after a resumed stream announced another payload than the one begun (the server's module
  // or backbone changed in between).
  bool payload_changed() const { return payload_changed_; }
  // Every byte announced has arrived (Finish still checks the CRC-32).
  bool complete() const { return started_ && received_bytes() == total_bytes_; }

  // The payload, once the stream has ended. DataLoss if no chunk arrived, fewer bytes than
  // announced arrived, or the CRC-32 does not match; or the first error Add reported.
  absl::StatusOr<std::string> Finish();

  int64_t received_bytes() const { return static_cast<int64_t>(bytes_.size()); }
  // The verified bytes so far, from offset 0.
  absl::string_view received() const { return bytes_; }
  // Once the first chunk arrived: the payload's size and CRC-32 as it announced them.
  bool started() const { return started_; }
  int64_t total_bytes() const { return total_bytes_; }
  uint32_t payload_crc32() const { return expected_crc_; }

 private:
  absl::Status Fail(absl::Status status);

  const std::string what_;
  const int64_t max_bytes_;
  bool started_ = false;
  bool resuming_ = false;
  bool payload_changed_ = false;
  int64_t total_bytes_ = 0;
  uint32_t expected_crc_ = 0;
  std::string bytes_;
  absl::Status error_;
};

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_CHUNKS_H_
