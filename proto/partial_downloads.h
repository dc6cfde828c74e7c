// Downloads cut short, kept on disk so that a device that restarts (killed by the OS, rebooted,
// its app updated) resumes them from the last verified chunk instead of starting over (issue 18,
// item 5). GrpcPort uses it when GrpcPortOptions::partial_downloads_dir is set; the SDK keeps its
// partials in <storage_dir>/downloads, fedcl-client in <state_dir>/downloads.
//
// Per payload, by the port's name ("backbone checkpoint", "module:head"), two files:
//   <key>.part  the verified bytes from offset 0, appended as they arrive (no fsync);
//   <key>.meta  fedcl.v1.PartialDownload, replaced atomically after each append: the version the
//               bytes belong to, the payload's size and CRC-32 as announced, and how many bytes
//               of .part are verified, with their CRC-32.
// A crash between an append and its record leaves .part longer than the record says; the rest is
// ignored (and cut off when the download resumes). Load trusts nothing: a record that does not
// parse or does not add up, another version's, or a prefix whose CRC-32 does not match, is
// deleted and the download starts over. Persisting is best effort: a failure to write deletes
// what was kept and the download goes on in memory.
//
//   PartialDownloadStore store(fs, dir);
//   std::unique_ptr<ChunkAssembler> a = store.Load(name, version, what, max_bytes);  // or null
//   ... after each verified chunk: store.Persist(name, version, *a, kPersistEveryBytes);
//   ... done or damaged: store.Remove(name); cut short: store.Persist(name, version, *a, 0).
//
// Thread-safe.
#ifndef FEDCL_PROTO_PARTIAL_DOWNLOADS_H_
#define FEDCL_PROTO_PARTIAL_DOWNLOADS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/base/filesystem.h"
#include "proto/chunks.h"

namespace fedcl::proto {

class PartialDownloadStore {
 public:
  // `fs` must outlive the store; `dir` is created at the first write.
  PartialDownloadStore(base::FileSystem& fs, std::string dir);

  // The kept prefix of `name` at `version` as an assembler ready to resume (ResumeStream, then
  // the chunks from its received_bytes()), or null: nothing kept, or something unusable (damaged,
  // another version, over `max_bytes`), which is deleted and counted in discarded().
  std::unique_ptr<ChunkAssembler> Load(const std::string& name, const std::string& version,
                                       const std::string& what, int64_t max_bytes);
  // Keeps what `assembler` verified beyond what is kept already, once that is at least
  // `min_new_bytes` (0: whatever there is). An assembler of another version or payload than the
  // kept one, or with fewer bytes (a fresh one), replaces it. On a write error the kept partial
  // is deleted (the download goes on in memory) and the error returned.
  absl::Status Persist(const std::string& name, const std::string& version,
                       const ChunkAssembler& assembler, int64_t min_new_bytes);
  // Deletes what is kept of `name` (its download finished, or cannot be resumed).
  void Remove(const std::string& name);

  // Kept partials found unusable and deleted by Load, since the store was made.
  int64_t discarded() const;

  // The files of `name` in the store's directory (tests damage them).
  std::string PartPath(const std::string& name) const;
  std::string MetaPath(const std::string& name) const;

 private:
  struct Kept {
    std::string version;
    int64_t total_bytes = 0;
    uint32_t payload_crc32 = 0;
    int64_t bytes = 0;  // verified bytes in .part that the record vouches for
    uint32_t crc32 = 0;
  };
  absl::Status WriteRecordLocked(const std::string& name, const Kept& kept)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  base::FileSystem& fs_;
  const std::string dir_;
  mutable absl::Mutex mu_;
  std::map<std::string, Kept> kept_ ABSL_GUARDED_BY(mu_);  // what is on disk, by name
  bool dir_made_ ABSL_GUARDED_BY(mu_) = false;
  int64_t discarded_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_PARTIAL_DOWNLOADS_H_
