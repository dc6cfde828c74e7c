// fedcl-server's update journal: an append-only file of the open round's accepted updates, with
// group commit. The writer and the reader of the format live here (one codec per format).
//
//   FEDCL_ASSIGN_OR_RETURN(JournalContents old, UpdateJournal::Read("/state/journal.log"));
//   FEDCL_ASSIGN_OR_RETURN(auto journal, UpdateJournal::Open("/state/journal.log", {}));
//   FEDCL_RETURN_IF_ERROR(journal->Append(entry));   // durable on return
//   ...
//   FEDCL_RETURN_IF_ERROR(journal->Reset());         // the round closed: drop every record
//
// Record layout (integers little-endian). Records start and end on 4 KiB boundaries, so that the
// values can go from the caller's buffer to the disk with O_DIRECT: no copy into the page cache.
//
//   offset  size  field
//        0     4  magic "FJR1"
//        4     4  CRC-32 (zlib/IEEE) of the length, the metadata and the values (not the padding)
//        8     8  length L of the rest of the record (16 + L is a multiple of 4096)
//       16     M  metadata: round (i64), client (u64), weight (f64), flags (u8: bit 0 clipped,
//                 bit 1 a base round follows), [base round (i64), asynchronous rounds only],
//                 num_samples (i64), local_steps (i64), loss (f64), module count (u32), each
//                 module name (u32 length + bytes), value count N (u64)
//        -     -  zeros up to the next 4 KiB boundary
//        -    4N  the values (float32), the modules' deltas concatenated in order
//        -     -  zeros up to the next 4 KiB boundary
//
// Durability: Append returns once its record is written and, with `sync`, fdatasync'ed. Appends
// from concurrent threads share one write (pwritev) and one fdatasync: the first waiter commits
// every record queued so far, each writer having encoded its own metadata and checksum. Values in
// a 4 KiB-aligned buffer (fedcl-server's staging buffers are) are written from it directly, the
// last partial block through a small copy; others are copied once into an aligned buffer. Where
// the file system refuses O_DIRECT (e.g. tmpfs) the journal writes through the page cache, in
// the same format. A record is acknowledged only after the sync that covers it; a crash
// mid-write leaves a torn tail, which the reader detects (length beyond the file, a checksum
// mismatch, a record that does not parse) and ignores, and Open truncates away before appending
// again. A failed write is truncated away too, so later records never follow garbage.
//
// Thread-safe.
#ifndef FEDCL_SERVER_UPDATE_JOURNAL_H_
#define FEDCL_SERVER_UPDATE_JOURNAL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/fl/state_store.h"

namespace fedcl::server {

struct UpdateJournalOptions {
  // fdatasync every commit (survives a power cut); false: written only (survives a crash of the
  // process, not of the machine).
  bool sync = true;
  // Write with O_DIRECT where the file system allows it (false: always through the page cache).
  bool direct = true;
  // Tests: runs in the committing thread after a batch is written, before it is synced.
  std::function<void()> before_sync;
};

// What a read of a journal file found.
struct JournalContents {
  std::vector<fl::JournalEntry> entries;  // the intact records, in file order
  int64_t intact_bytes = 0;               // where the intact records end
  int64_t file_bytes = 0;                 // the file's size (more: a torn or corrupt tail)
};

class UpdateJournal {
 public:
  // Opens (creating) the journal at `path` for appending after its intact records, cutting off a
  // torn or corrupt tail. Internal (naming the path and errno) if the file cannot be opened,
  // read or truncated.
  static absl::StatusOr<std::unique_ptr<UpdateJournal>> Open(const std::string& path,
                                                             UpdateJournalOptions options);
  // The records of the journal at `path` up to the first one that is torn or corrupt (an empty
  // journal if the file does not exist); with `values` false their values are checked but not
  // kept. Internal if the file cannot be read.
  static absl::StatusOr<JournalContents> Read(const std::string& path, bool values = true);
  ~UpdateJournal();
  UpdateJournal(const UpdateJournal&) = delete;
  UpdateJournal& operator=(const UpdateJournal&) = delete;

  // Appends `entry` (values from entry.views if any, else entry.values); durable on return as
  // the options say. Unavailable if the write or the sync failed (the record is not in the file).
  absl::Status Append(const fl::JournalEntry& entry);
  // Drops every record (truncates the file). Not synced: a record that reappears after a crash
  // is of a closed round, which readers skip.
  absl::Status Reset();

  int64_t commits() const;  // writes (each with its sync) so far
  int64_t entries() const;  // records they carried
  int queued() const;       // appends waiting for a commit (tests)

 private:
  struct Pending;
  UpdateJournal(int fd, bool direct, std::string path, UpdateJournalOptions options, int64_t end);
  // Writes `batch` at `at` and syncs it; on failure cuts the file back to `at`.
  absl::Status Commit(const std::deque<Pending*>& batch, int64_t at);
  // Reopens the file without O_DIRECT (the kernel refused a direct write).
  bool FallBackToBufferedWrites();

  int fd_;       // written only by the committing thread
  bool direct_;  // fd_ has O_DIRECT
  const std::string path_;
  const UpdateJournalOptions options_;

  mutable absl::Mutex mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  int64_t end_ ABSL_GUARDED_BY(mu_) = 0;  // where the next record goes
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t entries_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_UPDATE_JOURNAL_H_
