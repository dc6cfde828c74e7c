#include "proto/chunks.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"

namespace fedcl::proto {
namespace {

std::string Hex32(uint32_t value) { return absl::StrCat("0x", absl::Hex(value, absl::kZeroPad8)); }

// A lying header must not make us allocate its claim up front; larger payloads grow as they come.
constexpr int64_t kMaxReserveBytes = int64_t{64} << 20;

}  // namespace

ChunkSplitter::ChunkSplitter(absl::string_view payload, uint32_t crc32, int64_t chunk_bytes,
                             int64_t offset)
    : payload_(payload),
      crc32_(crc32),
      chunk_bytes_(std::max<int64_t>(1, chunk_bytes)),
      offset_(std::clamp<int64_t>(offset, 0, static_cast<int64_t>(payload.size()))) {}

bool ChunkSplitter::Next(v1::Chunk* chunk) {
  const int64_t total = static_cast<int64_t>(payload_.size());
  if (started_ && offset_ >= total) return false;
  chunk->Clear();
  chunk->set_offset(offset_);
  const int64_t size = std::min(chunk_bytes_, total - offset_);
  chunk->set_data(payload_.data() + offset_, static_cast<size_t>(size));
  chunk->set_chunk_crc32(base::Crc32(chunk->data()));
  if (!started_) {  // even an empty rest is sent as one (empty) chunk
    chunk->set_total_bytes(total);
    chunk->set_crc32(crc32_);
  }
  started_ = true;
  offset_ += size;
  return true;
}

ChunkAssembler::ChunkAssembler(std::string what, int64_t max_bytes)
    : what_(std::move(what)), max_bytes_(max_bytes) {}

absl::StatusOr<std::unique_ptr<ChunkAssembler>> ChunkAssembler::Resume(
    std::string what, int64_t max_bytes, int64_t total_bytes, uint32_t crc32, std::string prefix) {
  if (total_bytes < static_cast<int64_t>(prefix.size()) || total_bytes > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("a partial download of ", what, " has ",
                                                   prefix.size(), " of ", total_bytes,
                                                   " bytes, with a limit of ", max_bytes));
  }
  auto assembler = std::make_unique<ChunkAssembler>(std::move(what), max_bytes);
  assembler->started_ = true;
  assembler->total_bytes_ = total_bytes;
  assembler->expected_crc_ = crc32;
  assembler->bytes_ = std::move(prefix);
  return assembler;
}

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
  } else if (resuming_) {
    resuming_ = false;
    if (chunk.total_bytes() != total_bytes_ || chunk.crc32() != expected_crc_) {
      payload_changed_ = true;
      return Fail(absl::DataLossError(
          absl::StrCat("download of ", what_, " resumed on another payload (", chunk.total_bytes(),
                       " bytes, CRC-32 ", Hex32(chunk.crc32()), "; it began as ", total_bytes_,
                       " bytes, ", Hex32(expected_crc_), ")")));
    }
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
  if (base::Crc32(chunk.data()) != chunk.chunk_crc32()) {
    return Fail(absl::DataLossError(absl::StrCat("download of ", what_, ": the chunk at offset ",
                                                 chunk.offset(), " is damaged (CRC-32 announced ",
                                                 Hex32(chunk.chunk_crc32()), ")")));
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

}  // namespace fedcl::proto
