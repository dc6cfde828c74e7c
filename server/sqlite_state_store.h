// fedcl-server's durable state: SQLite in WAL mode for the client registry (with FedAU state),
// the round log and the update journal, plus one module-pool file per closed round.
//
// Layout of the state directory:
//   state.db            registry, round log, journal, which pool file is current, and the
//                       growing pool's registry (pool_modules, pool_holders)
//   pool-<round>.bin    the module pool after round <round> closed (pool--1.bin: the initial
//                       pool), an envelope written atomically (temp file, fsync, rename)
//
// Durability (the StateStore contract, state_store.h): JournalUpdate returns after the entry is
// committed; with sync "full" every commit is fsynced (survives power loss), with "normal" it
// survives a process crash. Concurrent JournalUpdate calls share commits (group commit: the
// first waiter commits every queued entry in one transaction), so many clients cost one fsync
// per batch, not per update. RoundClosed writes the next pool file first and then, in one
// transaction, updates the registry, closes the round in the log, points the database at the new
// file and drops the round's journal: a crash in between leaves the old pool current and the
// journal intact.
//
// Thread-safe.
#ifndef FEDCL_SERVER_SQLITE_STATE_STORE_H_
#define FEDCL_SERVER_SQLITE_STATE_STORE_H_

#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/base/filesystem.h"
#include "core/fl/state_store.h"

struct sqlite3;

namespace fedcl::server {

struct SqliteStoreOptions {
  std::string directory;        // created if missing
  bool journal_enabled = true;  // false: JournalUpdate records nothing (benchmarks only)
  // true: SQLite synchronous=FULL and fsynced pool files (survives a power cut); false:
  // synchronous=NORMAL and unsynced pool files (survives a crash of the process only).
  bool full_sync = true;
};

class SqliteStateStore final : public fl::StateStore {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteStateStore>> Open(base::FileSystem& fs,
                                                                const SqliteStoreOptions& options);
  ~SqliteStateStore() override;

  absl::Status PutClient(const fl::ClientRecord& client) override;
  absl::Status JournalUpdate(const fl::JournalEntry& entry) override;
  absl::Status RoundOpened(const fl::RoundRecord& round) override;
  absl::Status RoundClosed(const fl::RoundClose& close) override;
  // One transaction each: the registry row, new holders and counters; the holders.
  absl::Status PoolProposal(const fl::PoolProposalRecord& record) override;
  absl::Status PutPoolHolders(absl::Span<const fl::PoolHolder> holders) override;
  absl::StatusOr<fl::StoredState> Load() const override;
  bool journals() const override { return options_.journal_enabled; }

  // Journal commits so far and entries they carried (group commit effectiveness).
  int64_t journal_commits() const;
  int64_t journal_entries() const;

 private:
  SqliteStateStore(base::FileSystem& fs, const SqliteStoreOptions& options, sqlite3* db);

  struct PendingEntry {
    const fl::JournalEntry* entry;
    bool done = false;
    absl::Status status;
  };
  absl::Status CommitJournalBatch(const std::deque<PendingEntry*>& batch);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status WriteClientLocked(const fl::ClientRecord& client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status WritePoolHolderLocked(const fl::PoolHolder& holder)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status LoadPoolLocked(fl::ModuleRegistryState& pool) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status SetMetaLocked(const char* key, int64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  std::string PoolPath(int64_t closed_round) const;

  base::FileSystem& fs_;
  const SqliteStoreOptions options_;

  mutable absl::Mutex db_mu_;
  sqlite3* db_ ABSL_GUARDED_BY(db_mu_);

  // Group commit of journal entries.
  mutable absl::Mutex queue_mu_;
  std::deque<PendingEntry*> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool committing_ ABSL_GUARDED_BY(queue_mu_) = false;
  int64_t commits_ ABSL_GUARDED_BY(queue_mu_) = 0;
  int64_t entries_ ABSL_GUARDED_BY(queue_mu_) = 0;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_SQLITE_STATE_STORE_H_
