// Partial downloads on disk (partial_downloads.h).
#include "proto/partial_downloads.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "proto/fedcl/v1/device_state.pb.h"

namespace fedcl::proto {
namespace {

// A file name for a payload's name: its bytes in hex while short, else their size and CRC-32
// (the record inside names the payload, so a collision is found and treated as another's).
std::string KeyOf(const std::string& name) {
  if (name.size() <= 48) return absl::BytesToHexString(name);
  return absl::StrCat("long-", name.size(), "-", absl::Hex(base::Crc32(name), absl::kZeroPad8));
}

}  // namespace

PartialDownloadStore::PartialDownloadStore(base::FileSystem& fs, std::string dir)
    : fs_(fs), dir_(std::move(dir)) {}

std::string PartialDownloadStore::PartPath(const std::string& name) const {
  return base::JoinPath(dir_, absl::StrCat(KeyOf(name), ".part"));
}

std::string PartialDownloadStore::MetaPath(const std::string& name) const {
  return base::JoinPath(dir_, absl::StrCat(KeyOf(name), ".meta"));
}

int64_t PartialDownloadStore::discarded() const {
  absl::MutexLock lock(&mu_);
  return discarded_;
}

void PartialDownloadStore::RemoveLocked(const std::string& name) {
  kept_.erase(name);
  // NotFound is the usual case (nothing was kept); nothing else can be done about other errors.
  fs_.DeleteFile(MetaPath(name)).IgnoreError();
  fs_.DeleteFile(PartPath(name)).IgnoreError();
}

void PartialDownloadStore::Remove(const std::string& name) {
  absl::MutexLock lock(&mu_);
  RemoveLocked(name);
}

std::unique_ptr<ChunkAssembler> PartialDownloadStore::Load(const std::string& name,
                                                           const std::string& version,
                                                           const std::string& what,
                                                           int64_t max_bytes) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::string> meta = fs_.ReadFile(MetaPath(name), /*max_bytes=*/64 << 10);
  if (!meta.ok()) {
    // Nothing kept (or an unreadable record, whose bytes could not be vouched for anyway).
    if (!absl::IsNotFound(meta.status())) RemoveLocked(name);
    kept_.erase(name);
    return nullptr;
  }
  auto discard = [&]() -> std::unique_ptr<ChunkAssembler> {
    RemoveLocked(name);
    ++discarded_;
    return nullptr;
  };
  v1::PartialDownload record;
  if (!record.ParseFromString(*meta) || record.name() != name || record.version() != version ||
      record.total_bytes() < 0 || record.total_bytes() > max_bytes ||
      record.verified_bytes() <= 0 || record.verified_bytes() > record.total_bytes()) {
    return discard();
  }
  absl::StatusOr<std::string> part =
      fs_.ReadFile(PartPath(name), static_cast<uint64_t>(record.total_bytes()));
  if (!part.ok() || static_cast<int64_t>(part->size()) < record.verified_bytes()) return discard();
  const bool longer = static_cast<int64_t>(part->size()) > record.verified_bytes();
  part->resize(static_cast<size_t>(record.verified_bytes()));
  if (base::Crc32(*part) != record.verified_crc32()) return discard();
  // Bytes appended after the record was written are not vouched for: cut them off, so that the
  // next append continues the verified prefix.
  if (longer &&
      !fs_.WriteFileAtomically(PartPath(name), *part, base::FileSystem::Sync::kCrashSafe).ok()) {
    return discard();
  }
  absl::StatusOr<std::unique_ptr<ChunkAssembler>> assembler = ChunkAssembler::Resume(
      what, max_bytes, record.total_bytes(), record.payload_crc32(), std::move(*part));
  if (!assembler.ok()) return discard();
  kept_[name] = Kept{.version = version,
                     .total_bytes = record.total_bytes(),
                     .payload_crc32 = record.payload_crc32(),
                     .bytes = record.verified_bytes(),
                     .crc32 = record.verified_crc32()};
  return *std::move(assembler);
}

absl::Status PartialDownloadStore::WriteRecordLocked(const std::string& name, const Kept& kept) {
  v1::PartialDownload record;
  record.set_name(name);
  record.set_version(kept.version);
  record.set_total_bytes(kept.total_bytes);
  record.set_payload_crc32(kept.payload_crc32);
  record.set_verified_bytes(kept.bytes);
  record.set_verified_crc32(kept.crc32);
  return fs_.WriteFileAtomically(MetaPath(name), record.SerializeAsString(),
                                 base::FileSystem::Sync::kCrashSafe);
}

absl::Status PartialDownloadStore::Persist(const std::string& name, const std::string& version,
                                           const ChunkAssembler& assembler, int64_t min_new_bytes) {
  if (!assembler.started()) return absl::OkStatus();  // no chunk yet: nothing to keep
  absl::MutexLock lock(&mu_);
  auto it = kept_.find(name);
  const int64_t received = assembler.received_bytes();
  if (it == kept_.end() || it->second.version != version ||
      it->second.total_bytes != assembler.total_bytes() ||
      it->second.payload_crc32 != assembler.payload_crc32() || it->second.bytes > received) {
    // Nothing kept, or another download's bytes: this one starts the file afresh.
    if (received < min_new_bytes || received == 0) return absl::OkStatus();
    RemoveLocked(name);
    if (!dir_made_) {
      FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(dir_));
      dir_made_ = true;
    }
    it = kept_
             .insert({name, Kept{.version = version,
                                 .total_bytes = assembler.total_bytes(),
                                 .payload_crc32 = assembler.payload_crc32()}})
             .first;
  }
  Kept& kept = it->second;
  const int64_t fresh = received - kept.bytes;
  if (fresh == 0 || fresh < min_new_bytes) return absl::OkStatus();
  const absl::string_view add = assembler.received().substr(static_cast<size_t>(kept.bytes));
  absl::Status status = fs_.AppendToFile(PartPath(name), add);
  if (status.ok()) {
    kept.crc32 = base::Crc32(add, kept.crc32);
    kept.bytes = received;
    status = WriteRecordLocked(name, kept);
  }
  // A failed append may have left part of its bytes: nothing after them would line up.
  if (!status.ok()) RemoveLocked(name);
  return status;
}

}  // namespace fedcl::proto
