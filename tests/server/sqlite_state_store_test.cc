#include "server/sqlite_state_store.h"

#include <cstdlib>
#include <thread>

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

TEST_F(SqliteStateStoreTest, ConcurrentJournalWritesShareCommits) {
  auto store = Open();
  fl::RoundClose close;
  close.closed_round = -1;
  close.modules.push_back(Module(0.0f));
  ASSERT_TRUE(store->RoundClosed(close).ok());
  ASSERT_TRUE(store->RoundOpened({0, absl::Now(), absl::Now()}).ok());
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&store, i] {
      fl::JournalEntry entry;
      entry.round = 0;
      entry.client = static_cast<fl::ClientId>(i);
      entry.module_names = {"head"};
      entry.values = {1, 2, 3};
      EXPECT_TRUE(store->JournalUpdate(entry).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store->journal_entries(), 32);
  EXPECT_LE(store->journal_commits(), 32);
  EXPECT_EQ(store->Load()->journal.size(), 32u);
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
