#include "server/sqlite_state_store.h"

#include <cstdlib>
#include <thread>
#include <vector>

#include "core/base/filesystem.h"
#include "gtest/gtest.h"

namespace fedcl::server {
namespace {

class SqliteStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_store_XXXXXX";
    dir_ = mkdtemp(pattern);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::unique_ptr<SqliteStateStore> Open(bool journal = true) {
    auto store = SqliteStateStore::Open(base::FileSystem::Default(), {dir_, journal, true});
    EXPECT_TRUE(store.ok()) << store.status();
    return *std::move(store);
  }
  // The initial pool (one module of zeros) as round -1's close, then round `round` opened.
  static void StartRound(SqliteStateStore& store, int64_t round) {
    fl::RoundClose close;
    close.closed_round = -1;
    close.modules.push_back(Module(0.0f));
    EXPECT_TRUE(store.RoundClosed(close).ok());
    EXPECT_TRUE(store.RoundOpened({round, absl::Now(), absl::Now()}).ok());
  }
  static fl::StoredModule Module(float value) {
    fl::StoredModule m;
    m.spec = {"head", fl::ModuleRole::kHead, {}};
    m.values.Add("w", {3}, true);
    m.values.flat_values().setConstant(value);
    return m;
  }
  std::string dir_;
};

TEST_F(SqliteStateStoreTest, FreshStoreIsNotFound) {
  EXPECT_EQ(Open()->Load().status().code(), absl::StatusCode::kNotFound);
}

// What the coordinator writes survives closing and reopening the database (a restart).
TEST_F(SqliteStateStoreTest, StateSurvivesAReopen) {
  {
    auto store = Open();
    fl::RoundClose initial;
    initial.closed_round = -1;
    initial.modules.push_back(Module(1.0f));
    ASSERT_TRUE(store->RoundClosed(initial).ok());
    fl::ClientRecord client;
    client.id = 42;
    client.fedau = fl::FedAuEnrol(0);
    ASSERT_TRUE(store->PutClient(client).ok());
    ASSERT_TRUE(
        store->RoundOpened({0, absl::FromUnixMillis(1000), absl::FromUnixMillis(31000)}).ok());
    fl::JournalEntry entry;
    entry.round = 0;
    entry.client = 42;
    entry.weight = 2.5;
    entry.module_names = {"head"};
    entry.values = {0.5f, -1.0f, 2.0f};
    ASSERT_TRUE(store->JournalUpdate(entry).ok());
  }
  auto state = Open()->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->last_closed_round, -1);
  ASSERT_EQ(state->modules.size(), 1u);
  EXPECT_EQ(state->modules[0].values.flat_values()[2], 1.0f);
  ASSERT_EQ(state->clients.size(), 1u);
  EXPECT_EQ(state->clients[0].id, 42u);
  ASSERT_TRUE(state->open_round.has_value());
  EXPECT_EQ(absl::ToUnixMillis(state->open_round->deadline), 31000);
  ASSERT_EQ(state->journal.size(), 1u);
  EXPECT_EQ(state->journal[0].weight, 2.5);
  EXPECT_EQ(state->journal[0].values, (std::vector<float>{0.5f, -1.0f, 2.0f}));
}

TEST_F(SqliteStateStoreTest, ClosingARoundReplacesThePoolAndDropsItsJournal) {
  auto store = Open();
  fl::RoundClose close;
  close.closed_round = -1;
  close.modules.push_back(Module(1.0f));
  ASSERT_TRUE(store->RoundClosed(close).ok());
  ASSERT_TRUE(store->RoundOpened({0, absl::Now(), absl::Now()}).ok());
  fl::JournalEntry entry;
  entry.round = 0;
  entry.client = 1;
  entry.module_names = {"head"};
  entry.values = {1, 1, 1};
  ASSERT_TRUE(store->JournalUpdate(entry).ok());
  close.closed_round = 0;
  close.modules[0] = Module(2.0f);
  close.modules[0].version = 1;
  ASSERT_TRUE(store->RoundClosed(close).ok());
  auto state = store->Load();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->last_closed_round, 0);
  EXPECT_EQ(state->modules[0].version, 1);
  EXPECT_EQ(state->modules[0].values.flat_values()[0], 2.0f);
  EXPECT_FALSE(state->open_round.has_value());
  EXPECT_TRUE(state->journal.empty());
}

// The growing pool's registry: a proposal, holders added later and counters moved by a close
// all survive a reopen, and a recovered coordinator would restore exactly this registry.
TEST_F(SqliteStateStoreTest, ThePoolRegistrySurvivesAReopen) {
  {
    auto store = Open();
    fl::RoundClose close;
    close.closed_round = -1;
    close.modules.push_back(Module(1.0f));
    ASSERT_TRUE(store->RoundClosed(close).ok());
    fl::PoolProposalRecord record;
    record.module.id = 1;
    record.module.name = "block2/m1";
    record.module.block = 2;
    record.module.created_round = 0;
    record.module.spec = {"block2/m1", fl::ModuleRole::kExpert, {}, 2};
    record.module.values.Add("router.bias", {1}, true);
    record.module.values.flat_values()[0] = 0.25f;
    record.module.descriptor.Add("prototype", {2}, false);
    record.module.descriptor.flat_values() << 3.0f, 4.0f;
    record.module.statistics = {{0.5f, -0.5f}, {1.0f, 2.0f}};
    record.module.proposers = {7};
    record.next_id = 2;
    record.new_holders.push_back({1, 7, fl::FedAuEnrol(0)});
    ASSERT_TRUE(store->PoolProposal(record).ok());
    record.module.proposers = {7, 8};  // a second proposal joined it
    record.merges = 1;
    record.new_holders = {{1, 8, fl::FedAuEnrol(0)}};
    ASSERT_TRUE(store->PoolProposal(record).ok());
    const fl::PoolHolder late[] = {{1, 9, fl::FedAuEnrol(1)}};
    ASSERT_TRUE(store->PutPoolHolders(late).ok());
    close.closed_round = 0;
    fl::FedAuClientState moved = fl::FedAuEnrol(0);
    ASSERT_TRUE(fl::FedAuParticipate(moved, 0, fl::kFedAuNoCutoff).ok());
    close.pool_holders = {{1, 7, moved}};
    ASSERT_TRUE(store->RoundClosed(close).ok());
  }
  auto state = Open()->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  const fl::ModuleRegistryState& pool = state->pool;
  EXPECT_EQ(pool.next_id, 2);
  EXPECT_EQ(pool.merges, 1);
  ASSERT_EQ(pool.modules.size(), 1u);
  const fl::RegisteredModule& m = pool.modules[0];
  EXPECT_EQ(m.name, "block2/m1");
  EXPECT_EQ(m.block, 2);
  EXPECT_EQ(m.spec.role, fl::ModuleRole::kExpert);
  EXPECT_EQ(m.values.flat_values()[0], 0.25f);
  EXPECT_EQ(m.descriptor.flat_values()[1], 4.0f);
  EXPECT_EQ(m.statistics.variance, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(m.proposers, (std::vector<fl::ClientId>{7, 8}));
  ASSERT_EQ(pool.holders.size(), 3u);
  EXPECT_EQ(pool.holders[0].client, 7u);
  EXPECT_EQ(pool.holders[0].fedau.intervals, 1);
  EXPECT_EQ(pool.holders[2].client, 9u);
  EXPECT_EQ(pool.holders[2].fedau, fl::FedAuEnrol(1));
}

// Concurrent writers (whose group commit journal_test makes deterministic) each find their own
// update back, whole, after a reopen; records of a closed round are not loaded.
TEST_F(SqliteStateStoreTest, ConcurrentJournalWritesAllLoadBackWhole) {
  {
    auto store = Open();
    StartRound(*store, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < 32; ++i) {
      threads.emplace_back([&store, i] {
        fl::JournalEntry entry;
        entry.round = 0;
        entry.client = static_cast<fl::ClientId>(100 - i);
        entry.weight = 1.0 + i;
        entry.num_samples = i;
        entry.module_names = {"head"};
        entry.values = {0.5f * i, -1.0f * i, 3.0f + i};
        EXPECT_TRUE(store->JournalUpdate(entry).ok());
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(store->journal_entries(), 32);
    EXPECT_GE(store->journal_commits(), 1);
  }
  auto state = Open()->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->journal.size(), 32u);
  for (size_t k = 0; k < 32; ++k) {
    const fl::JournalEntry& e = state->journal[k];
    const int i = 100 - static_cast<int>(e.client);
    EXPECT_EQ(e.client, 69u + k) << "in client order";
    EXPECT_EQ(e.weight, 1.0 + i);
    EXPECT_EQ(e.num_samples, i);
    EXPECT_EQ(e.values, (std::vector<float>{0.5f * i, -1.0f * i, 3.0f + i}));
  }
}

// A crash after the close's transaction but before the journal was emptied leaves the closed
// round's records in the file: they are not the open round's, so they are not loaded.
TEST_F(SqliteStateStoreTest, RecordsOfAClosedRoundLeftInTheJournalAreSkipped) {
  auto store = Open();
  StartRound(*store, 3);
  fl::JournalEntry stale;
  stale.round = 2;
  stale.client = 5;
  stale.module_names = {"head"};
  stale.values = {1, 2, 3};
  ASSERT_TRUE(store->JournalUpdate(stale).ok());
  fl::JournalEntry live = stale;
  live.round = 3;
  live.client = 6;
  ASSERT_TRUE(store->JournalUpdate(live).ok());
  auto state = store->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->journal.size(), 1u);
  EXPECT_EQ(state->journal[0].client, 6u);
}

TEST_F(SqliteStateStoreTest, JournalOffRecordsNothing) {
  auto store = Open(/*journal=*/false);
  fl::RoundClose close;
  close.closed_round = -1;
  close.modules.push_back(Module(0.0f));
  ASSERT_TRUE(store->RoundClosed(close).ok());
  fl::JournalEntry entry;
  entry.module_names = {"head"};
  ASSERT_TRUE(store->JournalUpdate(entry).ok());
  EXPECT_TRUE(store->Load()->journal.empty());
}

}  // namespace
}  // namespace fedcl::server
