// fedcl-server's durable state: SQLite in WAL mode for the client registry (with FedAU state) and
// the round log, an append-only journal file for the open round's updates, plus one module-pool
// file per closed round.
//
// Layout of the state directory:
//   state.db            registry, round log, which pool file is current, and the growing pool's
//                       registry (pool_modules, pool_holders)
//   journal.log         the open round's accepted updates (server/update_journal.h)
//   pool-<round>.bin    the module pool after round <round> closed (pool--1.bin: the initial
//                       pool), an envelope written atomically (temp file, fsync, rename)
//
// Durability (the StateStore contract, state_store.h): JournalUpdate returns after the update's
// record is in journal.log; with sync "full" every commit is fdatasync'ed (survives power loss),
// with "normal" it survives a process crash. Concurrent JournalUpdate calls share one write and
// one sync (group commit), so many clients cost one sync per batch, not per update, and an
// update's values go from the upload's buffer to the file without another copy. A torn tail (a
// crash mid-write) is detected by the records' checksums and cut off when the store opens.
// RoundClosed writes the next pool file first and then, in one transaction, updates the
// registry, closes the round in the log and points the database at the new file; only then is
// the journal emptied. A crash in between leaves the old pool current and the journal intact; a
// crash after the commit may leave the closed round's records in the journal, and Load skips
// records of any round but the open one.
//
// Thread-safe.
#ifndef FEDCL_SERVER_SQLITE_STATE_STORE_H_
#define FEDCL_SERVER_SQLITE_STATE_STORE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/base/filesystem.h"
#include "core/fl/state_store.h"
#include "proto/fedcl/v1/server_state.pb.h"
#include "server/update_journal.h"

struct sqlite3;

namespace fedcl::server {

struct SqliteStoreOptions {
  std::string directory;        // created if missing
  bool journal_enabled = true;  // false: JournalUpdate records nothing (benchmarks only)
  // true: SQLite synchronous=FULL, fsynced pool files and journal commits (survives a power cut);
  // false: synchronous=NORMAL, unsynced files (survives a crash of the process only).
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
  // The open round's journaled updates: the journal file's, and rows of the journal table that
  // stores written before the journal file existed may still hold; one per client.
  absl::Status LoadJournalLocked(int64_t round, std::vector<fl::JournalEntry>& journal) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);

  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status WriteClientLocked(const fl::ClientRecord& client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status WritePoolHolderLocked(const fl::PoolHolder& holder)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status LoadPoolLocked(fl::ModuleRegistryState& pool) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status SetMetaLocked(const char* key, int64_t value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  std::string PoolPath(int64_t closed_round) const;
  std::string JournalPath() const;

  base::FileSystem& fs_;
  const SqliteStoreOptions options_;

  mutable absl::Mutex db_mu_;
  sqlite3* db_ ABSL_GUARDED_BY(db_mu_);

  std::unique_ptr<UpdateJournal> journal_;  // null when the journal is disabled

  // The pool file is written every round, as large as the pool: its message and its encoding
  // keep their buffers from one round to the next, so a close copies into memory already mapped.
  absl::Mutex pool_file_mu_;
  v1::ModulePoolState pool_message_ ABSL_GUARDED_BY(pool_file_mu_);
  std::string pool_bytes_ ABSL_GUARDED_BY(pool_file_mu_);
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_SQLITE_STATE_STORE_H_
