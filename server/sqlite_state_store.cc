#include "server/sqlite_state_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/server_state.pb.h"
#include "proto/tensor_convert.h"

namespace fedcl::server {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
  id INTEGER PRIMARY KEY, enrolled_round INTEGER NOT NULL, revoked INTEGER NOT NULL,
  fedau_last_round INTEGER NOT NULL, fedau_intervals INTEGER NOT NULL,
  fedau_interval_sum INTEGER NOT NULL, participations INTEGER NOT NULL,
  last_participation_round INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
  round INTEGER PRIMARY KEY, opened_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL,
  closed_ms INTEGER, participants INTEGER, enrolled INTEGER);
-- Updates were journaled here before journal.log; kept so that a store written then still loads.
CREATE TABLE IF NOT EXISTS journal (
  round INTEGER NOT NULL, client INTEGER NOT NULL, weight REAL NOT NULL, clipped INTEGER NOT NULL,
  num_samples INTEGER NOT NULL, local_steps INTEGER NOT NULL, loss REAL NOT NULL,
  modules TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (round, client));
CREATE TABLE IF NOT EXISTS pool_modules (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pool_holders (
  module INTEGER NOT NULL, client INTEGER NOT NULL, fedau_last_round INTEGER NOT NULL,
  fedau_intervals INTEGER NOT NULL, fedau_interval_sum INTEGER NOT NULL,
  PRIMARY KEY (module, client));
)sql";

// meta keys
constexpr const char* kLastClosedRound = "last_closed_round";
constexpr const char* kOpenRound = "open_round";  // -1: none
constexpr const char* kPoolNextId = "pool_next_id";
constexpr const char* kPoolMerges = "pool_merges";

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(absl::StrCat("state database: ", what, ": ", sqlite3_errmsg(db)));
}

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return stmt_ != nullptr; }
  sqlite3_stmt* get() { return stmt_; }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const void* data, size_t size) {
    sqlite3_bind_blob64(stmt_, i, data, size, SQLITE_STATIC);
  }
  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view what) {
    if (!ok()) return SqliteError(db_, what);
    if (sqlite3_step(stmt_) != SQLITE_DONE) return SqliteError(db_, what);
    sqlite3_reset(stmt_);
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

int64_t ToMillis(absl::Time t) { return absl::ToUnixMillis(t); }

// ---- pool file <-> stored modules --------------------------------------------------------

void ToPoolProto(const fl::RoundClose& close, v1::ModulePoolState* pool) {
  pool->set_closed_round(close.closed_round);
  for (const fl::StoredModule& module : close.modules) {
    v1::PooledModuleState* m = pool->add_modules();
    m->mutable_spec()->set_name(module.spec.name);
    m->mutable_spec()->set_role(std::string(fl::ModuleRoleName(module.spec.role)));
    proto::ToProto(module.spec.pet, m->mutable_spec()->mutable_pet());
    m->set_version(module.version);
    proto::ToProto(module.values, m->mutable_values());
  }
  for (const auto& [name, vectors] : close.aggregator_memory) {
    v1::AggregatorMemoryState* memory = pool->add_aggregator_memory();
    memory->set_module(name);
    for (const auto& [client, values] : vectors) {
      v1::ClientVector* v = memory->add_vectors();
      v->set_client(client);
      v->set_values(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    }
  }
}

absl::Status FromPoolProto(const v1::ModulePoolState& pool, fl::StoredState& state) {
  for (const v1::PooledModuleState& m : pool.modules()) {
    fl::StoredModule module;
    module.spec.name = m.spec().name();
    FEDCL_ASSIGN_OR_RETURN(module.spec.role, fl::ParseModuleRole(m.spec().role()));
    if (module.spec.role == fl::ModuleRole::kPet) {
      FEDCL_ASSIGN_OR_RETURN(module.spec.pet, proto::FromProto(m.spec().pet()));
    }
    module.version = m.version();
    FEDCL_ASSIGN_OR_RETURN(module.values, proto::FromProto(m.values()));
    state.modules.push_back(std::move(module));
  }
  for (const v1::AggregatorMemoryState& memory : pool.aggregator_memory()) {
    auto& vectors = state.aggregator_memory[memory.module()];
    for (const v1::ClientVector& v : memory.vectors()) {
      if (v.values().size() % sizeof(float) != 0) {
        return absl::DataLossError("aggregator memory vector is not whole floats");
      }
      std::vector<float> values(v.values().size() / sizeof(float));
      std::memcpy(values.data(), v.values().data(), v.values().size());
      vectors.emplace_back(v.client(), std::move(values));
    }
  }
  return absl::OkStatus();
}

// ---- pool registry rows <-> registered modules --------------------------------------------

std::string PoolRecordBytes(const fl::RegisteredModule& module) {
  v1::PoolModuleRecord r;
  r.set_id(module.id);
  r.set_name(module.name);
  r.set_block(module.block);
  r.set_created_round(module.created_round);
  r.mutable_spec()->set_name(module.spec.name);
  r.mutable_spec()->set_role(std::string(fl::ModuleRoleName(module.spec.role)));
  proto::ToProto(module.values, r.mutable_values());
  proto::ToProto(module.descriptor, r.mutable_descriptor_tensors());
  for (float m : module.statistics.mean) r.add_statistics_mean(m);
  for (float v : module.statistics.variance) r.add_statistics_variance(v);
  for (fl::ClientId client : module.proposers) r.add_proposers(client);
  return r.SerializeAsString();
}

absl::StatusOr<fl::RegisteredModule> PoolRecordFromBytes(const void* data, int size) {
  v1::PoolModuleRecord r;
  if (!r.ParseFromArray(data, size)) return absl::DataLossError("unreadable pool module record");
  fl::RegisteredModule module;
  module.id = r.id();
  module.name = r.name();
  module.block = r.block();
  module.created_round = r.created_round();
  module.spec.name = r.spec().name();
  FEDCL_ASSIGN_OR_RETURN(module.spec.role, fl::ParseModuleRole(r.spec().role()));
  module.spec.block = r.block();
  FEDCL_ASSIGN_OR_RETURN(module.values, proto::FromProto(r.values()));
  FEDCL_ASSIGN_OR_RETURN(module.descriptor, proto::FromProto(r.descriptor_tensors()));
  module.values.DropGradients();
  module.descriptor.DropGradients();
  module.statistics.mean.assign(r.statistics_mean().begin(), r.statistics_mean().end());
  module.statistics.variance.assign(r.statistics_variance().begin(), r.statistics_variance().end());
  module.proposers.assign(r.proposers().begin(), r.proposers().end());
  return module;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(
    base::FileSystem& fs, const SqliteStoreOptions& options) {
  if (options.directory.empty()) return absl::InvalidArgumentError("state directory is empty");
  FEDCL_RETURN_IF_ERROR(fs.CreateDirectories(options.directory));
  const std::string path = base::JoinPath(options.directory, "state.db");
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status status = SqliteError(db, absl::StrCat("cannot open '", path, "'"));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<SqliteStateStore> store(new SqliteStateStore(fs, options, db));
  absl::MutexLock lock(&store->db_mu_);
  sqlite3_busy_timeout(db, 10000);
  // Journal rows are whole updates (megabytes): large pages store them as far fewer overflow
  // pages. Takes effect when the database is created (before WAL mode is set).
  FEDCL_RETURN_IF_ERROR(store->Exec("PRAGMA page_size=65536"));
  FEDCL_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  FEDCL_RETURN_IF_ERROR(
      store->Exec(options.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  FEDCL_RETURN_IF_ERROR(store->Exec(kSchema));
  if (options.journal_enabled) {
    FEDCL_ASSIGN_OR_RETURN(store->journal_,
                           UpdateJournal::Open(store->JournalPath(), {.sync = options.full_sync}));
  }
  return store;
}

SqliteStateStore::SqliteStateStore(base::FileSystem& fs, const SqliteStoreOptions& options,
                                   sqlite3* db)
    : fs_(fs), options_(options), db_(db) {}

SqliteStateStore::~SqliteStateStore() {
  absl::MutexLock lock(&db_mu_);
  sqlite3_close(db_);
}

absl::Status SqliteStateStore::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    absl::Status status =
        absl::InternalError(absl::StrCat("state database: ", error ? error : "?"));
    sqlite3_free(error);
    return status;
  }
  return absl::OkStatus();
}

std::string SqliteStateStore::JournalPath() const {
  return base::JoinPath(options_.directory, "journal.log");
}

std::string SqliteStateStore::PoolPath(int64_t closed_round) const {
  return base::JoinPath(options_.directory, absl::StrCat("pool-", closed_round, ".bin"));
}

absl::Status SqliteStateStore::SetMetaLocked(const char* key, int64_t value) {
  Statement st(db_, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)");
  st.Bind(1, std::string(key));
  st.Bind(2, value);
  return st.Run("writing meta");
}

absl::Status SqliteStateStore::WriteClientLocked(const fl::ClientRecord& c) {
  Statement st(db_,
               "INSERT OR REPLACE INTO clients (id, enrolled_round, revoked, fedau_last_round, "
               "fedau_intervals, fedau_interval_sum, participations, last_participation_round) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  st.Bind(1, static_cast<int64_t>(c.id));
  st.Bind(2, c.enrolled_round);
  st.Bind(3, int64_t{c.revoked});
  st.Bind(4, c.fedau.last_round);
  st.Bind(5, c.fedau.intervals);
  st.Bind(6, c.fedau.interval_sum);
  st.Bind(7, c.participations);
  st.Bind(8, c.last_participation_round);
  return st.Run("writing a client");
}

absl::Status SqliteStateStore::WritePoolHolderLocked(const fl::PoolHolder& h) {
  Statement st(db_,
               "INSERT OR REPLACE INTO pool_holders (module, client, fedau_last_round, "
               "fedau_intervals, fedau_interval_sum) VALUES (?1, ?2, ?3, ?4, ?5)");
  st.Bind(1, h.module_id);
  st.Bind(2, static_cast<int64_t>(h.client));
  st.Bind(3, h.fedau.last_round);
  st.Bind(4, h.fedau.intervals);
  st.Bind(5, h.fedau.interval_sum);
  return st.Run("writing a pool holder");
}

absl::Status SqliteStateStore::PoolProposal(const fl::PoolProposalRecord& record) {
  const std::string bytes = PoolRecordBytes(record.module);
  absl::MutexLock lock(&db_mu_);
  FEDCL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Cleanup rollback = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Exec("ROLLBACK").IgnoreError();  // the transaction's own error is what we report
  };
  Statement st(db_, "INSERT OR REPLACE INTO pool_modules (id, record) VALUES (?1, ?2)");
  st.Bind(1, record.module.id);
  st.BindBlob(2, bytes.data(), bytes.size());
  FEDCL_RETURN_IF_ERROR(st.Run("writing a pool module"));
  for (const fl::PoolHolder& holder : record.new_holders)
    FEDCL_RETURN_IF_ERROR(WritePoolHolderLocked(holder));
  FEDCL_RETURN_IF_ERROR(SetMetaLocked(kPoolNextId, record.next_id));
  FEDCL_RETURN_IF_ERROR(SetMetaLocked(kPoolMerges, record.merges));
  FEDCL_RETURN_IF_ERROR(Exec("COMMIT"));
  std::move(rollback).Cancel();
  return absl::OkStatus();
}

absl::Status SqliteStateStore::PutPoolHolders(absl::Span<const fl::PoolHolder> holders) {
  absl::MutexLock lock(&db_mu_);
  FEDCL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Cleanup rollback = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Exec("ROLLBACK").IgnoreError();  // the transaction's own error is what we report
  };
  for (const fl::PoolHolder& holder : holders) FEDCL_RETURN_IF_ERROR(WritePoolHolderLocked(holder));
  FEDCL_RETURN_IF_ERROR(Exec("COMMIT"));
  std::move(rollback).Cancel();
  return absl::OkStatus();
}

absl::Status SqliteStateStore::PutClient(const fl::ClientRecord& client) {
  absl::MutexLock lock(&db_mu_);
  return WriteClientLocked(client);
}

absl::Status SqliteStateStore::JournalUpdate(const fl::JournalEntry& entry) {
  if (journal_ == nullptr) return absl::OkStatus();
  return journal_->Append(entry);
}

absl::Status SqliteStateStore::RoundOpened(const fl::RoundRecord& round) {
  absl::MutexLock lock(&db_mu_);
  FEDCL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Cleanup rollback = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Exec("ROLLBACK").IgnoreError();  // the transaction's own error is what we report
  };
  Statement st(db_,
               "INSERT OR REPLACE INTO rounds (round, opened_ms, deadline_ms) VALUES (?1, ?2, ?3)");
  st.Bind(1, round.round);
  st.Bind(2, ToMillis(round.opened));
  st.Bind(3, ToMillis(round.deadline));
  FEDCL_RETURN_IF_ERROR(st.Run("logging an opened round"));
  FEDCL_RETURN_IF_ERROR(SetMetaLocked(kOpenRound, round.round));
  FEDCL_RETURN_IF_ERROR(Exec("COMMIT"));
  std::move(rollback).Cancel();
  return absl::OkStatus();
}

absl::Status SqliteStateStore::RoundClosed(const fl::RoundClose& close) {
  // 1. The new pool file, atomically. Until the database points at it, it is ignored.
  {
    absl::MutexLock pool_lock(&pool_file_mu_);
    pool_message_.Clear();  // keeps its modules' tensors and their byte strings for reuse
    ToPoolProto(close, &pool_message_);
    FEDCL_RETURN_IF_ERROR(proto::WriteEnvelope(
        fs_, PoolPath(close.closed_round), proto::PayloadKind::kModulePool, pool_message_,
        options_.full_sync ? base::FileSystem::Sync::kDurable : base::FileSystem::Sync::kCrashSafe,
        &pool_bytes_));
  }
  // 2. Everything else in one transaction.
  absl::MutexLock lock(&db_mu_);
  FEDCL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  absl::Cleanup rollback = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Exec("ROLLBACK").IgnoreError();  // the transaction's own error is what we report
  };
  for (const fl::ClientRecord& client : close.clients)
    FEDCL_RETURN_IF_ERROR(WriteClientLocked(client));
  for (const fl::PoolHolder& holder : close.pool_holders)
    FEDCL_RETURN_IF_ERROR(WritePoolHolderLocked(holder));
  Statement log(
      db_, "UPDATE rounds SET closed_ms = ?1, participants = ?2, enrolled = ?3 WHERE round = ?4");
  log.Bind(1, ToMillis(absl::Now()));
  log.Bind(2, close.participants);
  log.Bind(3, close.enrolled);
  log.Bind(4, close.closed_round);
  FEDCL_RETURN_IF_ERROR(log.Run("logging a closed round"));
  FEDCL_RETURN_IF_ERROR(SetMetaLocked(kLastClosedRound, close.closed_round));
  FEDCL_RETURN_IF_ERROR(SetMetaLocked(kOpenRound, -1));
  Statement drop(db_, "DELETE FROM journal WHERE round <= ?1");
  drop.Bind(1, close.closed_round);
  FEDCL_RETURN_IF_ERROR(drop.Run("dropping the journal"));
  FEDCL_RETURN_IF_ERROR(Exec("COMMIT"));
  std::move(rollback).Cancel();
  // 3. The round's journal records are no longer needed. Failing to drop them is harmless: Load
  // skips records of a closed round, and the next close tries again.
  if (journal_ != nullptr) journal_->Reset().IgnoreError();
  // 4. Older pools are no longer needed; failing to delete one is harmless.
  if (close.closed_round - 2 >= -1) fs_.DeleteFile(PoolPath(close.closed_round - 2)).IgnoreError();
  return absl::OkStatus();
}

absl::StatusOr<fl::StoredState> SqliteStateStore::Load() const {
  absl::MutexLock lock(&db_mu_);
  fl::StoredState state;
  int64_t open_round = -1;
  bool have_pool = false;
  {
    Statement st(db_, "SELECT key, value FROM meta");
    if (!st.ok()) return SqliteError(db_, "reading meta");
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      const std::string key = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 0));
      const int64_t value = sqlite3_column_int64(st.get(), 1);
      if (key == kLastClosedRound) {
        state.last_closed_round = value;
        have_pool = true;
      }
      if (key == kOpenRound) open_round = value;
      if (key == kPoolNextId) state.pool.next_id = value;
      if (key == kPoolMerges) state.pool.merges = value;
    }
  }
  if (!have_pool) return absl::NotFoundError("the state database holds no closed round yet");
  v1::ModulePoolState pool;
  FEDCL_RETURN_IF_ERROR(proto::ReadEnvelope(fs_, PoolPath(state.last_closed_round),
                                            proto::PayloadKind::kModulePool, &pool,
                                            uint64_t{1} << 34));
  FEDCL_RETURN_IF_ERROR(FromPoolProto(pool, state));
  {
    Statement st(db_,
                 "SELECT id, enrolled_round, revoked, fedau_last_round, fedau_intervals, "
                 "fedau_interval_sum, participations, last_participation_round FROM clients");
    if (!st.ok()) return SqliteError(db_, "reading clients");
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      fl::ClientRecord c;
      c.id = static_cast<fl::ClientId>(sqlite3_column_int64(st.get(), 0));
      c.enrolled_round = sqlite3_column_int64(st.get(), 1);
      c.revoked = sqlite3_column_int64(st.get(), 2) != 0;
      c.fedau.last_round = sqlite3_column_int64(st.get(), 3);
      c.fedau.intervals = sqlite3_column_int64(st.get(), 4);
      c.fedau.interval_sum = sqlite3_column_int64(st.get(), 5);
      c.participations = sqlite3_column_int64(st.get(), 6);
      c.last_participation_round = sqlite3_column_int64(st.get(), 7);
      FEDCL_RETURN_IF_ERROR(fl::ValidateFedAuClientState(c.fedau));
      state.clients.push_back(c);
    }
  }
  FEDCL_RETURN_IF_ERROR(LoadPoolLocked(state.pool));
  if (open_round < 0) return state;
  {
    Statement st(db_, "SELECT opened_ms, deadline_ms FROM rounds WHERE round = ?1");
    st.Bind(1, open_round);
    if (!st.ok() || sqlite3_step(st.get()) != SQLITE_ROW) {
      return absl::DataLossError(absl::StrCat("round ", open_round, " is open but not logged"));
    }
    state.open_round =
        fl::RoundRecord{open_round, absl::FromUnixMillis(sqlite3_column_int64(st.get(), 0)),
                        absl::FromUnixMillis(sqlite3_column_int64(st.get(), 1))};
  }
  FEDCL_RETURN_IF_ERROR(LoadJournalLocked(open_round, state.journal));
  return state;
}

absl::Status SqliteStateStore::LoadJournalLocked(int64_t round,
                                                 std::vector<fl::JournalEntry>& journal) const {
  FEDCL_ASSIGN_OR_RETURN(JournalContents contents, UpdateJournal::Read(JournalPath()));
  for (fl::JournalEntry& e : contents.entries) {
    if (e.round == round) journal.push_back(std::move(e));
  }
  Statement st(db_,
               "SELECT client, weight, clipped, num_samples, local_steps, loss, modules, data "
               "FROM journal WHERE round = ?1");
  st.Bind(1, round);
  if (!st.ok()) return SqliteError(db_, "reading the journal");
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    fl::JournalEntry e;
    e.round = round;
    e.client = static_cast<fl::ClientId>(sqlite3_column_int64(st.get(), 0));
    e.weight = sqlite3_column_double(st.get(), 1);
    e.clipped = sqlite3_column_int64(st.get(), 2) != 0;
    e.num_samples = sqlite3_column_int64(st.get(), 3);
    e.local_steps = sqlite3_column_int64(st.get(), 4);
    e.loss = sqlite3_column_double(st.get(), 5);
    const char* modules = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), 6));
    e.module_names = absl::StrSplit(modules ? modules : "", ',', absl::SkipEmpty());
    const int bytes = sqlite3_column_bytes(st.get(), 7);
    if (bytes % sizeof(float) != 0) return absl::DataLossError("journal entry is not whole floats");
    e.values.resize(bytes / sizeof(float));
    if (bytes > 0) std::memcpy(e.values.data(), sqlite3_column_blob(st.get(), 7), bytes);
    journal.push_back(std::move(e));
  }
  // One entry per client, the first journaled (a client's update is journaled once; a second
  // record can only be one whose write failed and was retried), in client order.
  std::stable_sort(
      journal.begin(), journal.end(),
      [](const fl::JournalEntry& a, const fl::JournalEntry& b) { return a.client < b.client; });
  journal.erase(std::unique(journal.begin(), journal.end(),
                            [](const fl::JournalEntry& a, const fl::JournalEntry& b) {
                              return a.client == b.client;
                            }),
                journal.end());
  return absl::OkStatus();
}

absl::Status SqliteStateStore::LoadPoolLocked(fl::ModuleRegistryState& pool) const {
  {
    Statement st(db_, "SELECT record FROM pool_modules ORDER BY id");
    if (!st.ok()) return SqliteError(db_, "reading the pool modules");
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      FEDCL_ASSIGN_OR_RETURN(
          fl::RegisteredModule module,
          PoolRecordFromBytes(sqlite3_column_blob(st.get(), 0), sqlite3_column_bytes(st.get(), 0)));
      pool.modules.push_back(std::move(module));
    }
  }
  Statement st(db_,
               "SELECT module, client, fedau_last_round, fedau_intervals, fedau_interval_sum "
               "FROM pool_holders ORDER BY module, client");
  if (!st.ok()) return SqliteError(db_, "reading the pool holders");
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    fl::PoolHolder h;
    h.module_id = sqlite3_column_int64(st.get(), 0);
    h.client = static_cast<fl::ClientId>(sqlite3_column_int64(st.get(), 1));
    h.fedau.last_round = sqlite3_column_int64(st.get(), 2);
    h.fedau.intervals = sqlite3_column_int64(st.get(), 3);
    h.fedau.interval_sum = sqlite3_column_int64(st.get(), 4);
    pool.holders.push_back(h);
  }
  return absl::OkStatus();
}

int64_t SqliteStateStore::journal_commits() const {
  return journal_ == nullptr ? 0 : journal_->commits();
}

int64_t SqliteStateStore::journal_entries() const {
  return journal_ == nullptr ? 0 : journal_->entries();
}

}  // namespace fedcl::server
