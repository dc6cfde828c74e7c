#include "server/update_journal.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/base/random.h"
#include "gtest/gtest.h"
#include "server/work_queue.h"

namespace fedcl::server {
namespace {

class UpdateJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_journal_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/journal.log";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // An entry of client `client` with `values` random values over one or two modules.
  static fl::JournalEntry Entry(fl::ClientId client, int values, uint64_t seed) {
    base::Rng rng(seed);
    fl::JournalEntry e;
    e.round = 7;
    e.client = client;
    e.weight = 0.5 + rng.Uniform();
    e.clipped = client % 2 == 1;
    if (client % 4 >= 2) e.base_round = 7 - static_cast<int64_t>(client % 5);  // late (fedbuff)
    e.num_samples = 16 + static_cast<int64_t>(client);
    e.local_steps = 3;
    e.loss = rng.Uniform() - 0.25;
    e.module_names = client % 3 == 0 ? std::vector<std::string>{"head", "ssf"}
                                     : std::vector<std::string>{"head"};
    for (int i = 0; i < values; ++i) e.values.push_back(static_cast<float>(rng.Normal()));
    return e;
  }
  static void ExpectSame(const fl::JournalEntry& got, const fl::JournalEntry& want) {
    EXPECT_EQ(got.round, want.round);
    EXPECT_EQ(got.base_round, want.base_round);
    EXPECT_EQ(got.client, want.client);
    EXPECT_EQ(got.weight, want.weight);
    EXPECT_EQ(got.clipped, want.clipped);
    EXPECT_EQ(got.num_samples, want.num_samples);
    EXPECT_EQ(got.local_steps, want.local_steps);
    EXPECT_EQ(got.loss, want.loss);
    EXPECT_EQ(got.module_names, want.module_names);
    EXPECT_EQ(got.values, want.values);
  }
  std::unique_ptr<UpdateJournal> Open(UpdateJournalOptions options = {}) {
    auto journal = UpdateJournal::Open(path_, std::move(options));
    EXPECT_TRUE(journal.ok()) << journal.status();
    return journal.ok() ? *std::move(journal) : nullptr;
  }
  std::vector<fl::JournalEntry> ReadAll() {
    auto contents = UpdateJournal::Read(path_);
    EXPECT_TRUE(contents.ok()) << contents.status();
    return contents.ok() ? contents->entries : std::vector<fl::JournalEntry>{};
  }
  int64_t FileSize() { return static_cast<int64_t>(std::filesystem::file_size(path_)); }

  std::string dir_, path_;
};

TEST_F(UpdateJournalTest, RecordsReadBackExactlyAndAfterAReopen) {
  std::vector<fl::JournalEntry> written;
  {
    auto journal = Open();
    for (int i = 0; i < 5; ++i) {
      written.push_back(Entry(i, 100 * i + 3, i));
      ASSERT_TRUE(journal->Append(written.back()).ok());
    }
    // Values given as views into a 4 KiB-aligned buffer (as fedcl-server's staging buffers are),
    // split over modules as the coordinator does: whole blocks written from the buffer itself,
    // the last partial one through a copy. Then views that are not contiguous.
    fl::JournalEntry viewed = Entry(9, 3000, 9);
    std::unique_ptr<float[], StagingBuffers::Free> buffer(
        static_cast<float*>(std::aligned_alloc(4096, 3 * 4096)));
    std::copy(viewed.values.begin(), viewed.values.end(), buffer.get());
    const absl::Span<const float> all(buffer.get(), 3000);
    viewed.views = {all.subspan(0, 1200), all.subspan(1200)};
    ASSERT_TRUE(journal->Append(viewed).ok());
    viewed.views.clear();
    written.push_back(viewed);
    fl::JournalEntry scattered = Entry(10, 30, 10);
    scattered.views = {all.subspan(7, 10), all.subspan(100, 20)};
    ASSERT_TRUE(journal->Append(scattered).ok());
    scattered.values.assign(all.begin() + 7, all.begin() + 17);
    scattered.values.insert(scattered.values.end(), all.begin() + 100, all.begin() + 120);
    scattered.views.clear();
    written.push_back(scattered);
  }
  EXPECT_EQ(UpdateJournal::Read(dir_ + "/missing.log")->entries.size(), 0u);
  auto journal = Open();
  const std::vector<fl::JournalEntry> read = ReadAll();
  ASSERT_EQ(read.size(), written.size());
  for (size_t i = 0; i < read.size(); ++i) ExpectSame(read[i], written[i]);
  ASSERT_TRUE(journal->Append(Entry(11, 4, 11)).ok()) << "appends follow the intact records";
  EXPECT_EQ(ReadAll().size(), written.size() + 1);
  ASSERT_TRUE(journal->Reset().ok());
  EXPECT_EQ(FileSize(), 0);
  ASSERT_TRUE(journal->Append(Entry(12, 4, 12)).ok());
  ASSERT_EQ(ReadAll().size(), 1u);
  ExpectSame(ReadAll()[0], Entry(12, 4, 12));
}

// A crash mid-write leaves a prefix of the last record. Cut it anywhere (every byte of its header
// and metadata, every 61st after): the reader keeps exactly the records before it, Open cuts the
// tail off, and later records follow the intact ones.
TEST_F(UpdateJournalTest, ATornTailIsIgnoredAndCutOffWhereverTheWriteStopped) {
  std::vector<fl::JournalEntry> written = {Entry(1, 7, 1), Entry(2, 9, 2), Entry(3, 11, 3)};
  {
    auto journal = Open();
    for (const fl::JournalEntry& e : written) ASSERT_TRUE(journal->Append(e).ok());
  }
  std::string whole;
  {
    std::ifstream in(path_, std::ios::binary);
    whole.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Where the second record ends: the size of a journal holding only the first two.
  {
    std::filesystem::remove(path_);
    auto journal = Open();
    ASSERT_TRUE(journal->Append(written[0]).ok());
    ASSERT_TRUE(journal->Append(written[1]).ok());
  }
  const int64_t two_end = FileSize();
  ASSERT_LT(two_end, static_cast<int64_t>(whole.size()));
  for (int64_t cut = two_end; cut < static_cast<int64_t>(whole.size()); ++cut) {
    // Every cut in the header and metadata, every 61st after them.
    if (cut - two_end >= 128 && cut % 61 != 0) continue;
    std::ofstream(path_, std::ios::binary | std::ios::trunc).write(whole.data(), cut);
    auto contents = UpdateJournal::Read(path_);
    ASSERT_TRUE(contents.ok()) << contents.status();
    ASSERT_EQ(contents->entries.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(contents->intact_bytes, two_end);
    EXPECT_EQ(contents->file_bytes, cut);
    auto journal = Open({.sync = false});  // what is tested is where records go, not syncs
    EXPECT_EQ(FileSize(), two_end) << "Open cuts the torn tail off";
    ASSERT_TRUE(journal->Append(written[2]).ok());
    const std::vector<fl::JournalEntry> read = ReadAll();
    ASSERT_EQ(read.size(), 3u) << "cut at " << cut;
    ExpectSame(read[2], written[2]);
  }
}

// A flipped bit anywhere in a record fails its checksum: that record and everything after it are
// ignored, never misread. Only the zero padding up to the 4 KiB boundaries is not checked (a
// flip there changes nothing read).
TEST_F(UpdateJournalTest, ACorruptRecordEndsTheJournalWhereverTheBitFlips) {
  {
    auto journal = Open();
    ASSERT_TRUE(journal->Append(Entry(1, 5, 1)).ok());
    ASSERT_TRUE(journal->Append(Entry(2, 5, 2)).ok());
  }
  const int64_t one_end = UpdateJournal::Read(path_)->intact_bytes / 2;  // equal-sized records
  std::string whole;
  {
    std::ifstream in(path_, std::ios::binary);
    whole.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_EQ(static_cast<int64_t>(whole.size()), 2 * one_end);
  ASSERT_EQ(one_end, 8192) << "a block of header and metadata, a block of values";
  // Checked bytes: the 16-byte header, 69 bytes of metadata (one module, "head") and, from the
  // next block on, 5 values. Every one of them is flipped; of the padding, every 37th byte.
  auto checked = [&](int64_t at) {
    const int64_t offset = at - one_end;
    return offset < 16 + 69 || (offset >= 4096 && offset < 4096 + 5 * 4);
  };
  base::Rng rng(5);
  for (int64_t at = one_end; at < static_cast<int64_t>(whole.size()); ++at) {
    if (!checked(at) && at % 37 != 0) continue;
    std::string damaged = whole;
    damaged[at] ^= static_cast<char>(1 << rng.UniformInt(8));
    std::ofstream(path_, std::ios::binary | std::ios::trunc).write(damaged.data(), damaged.size());
    auto contents = UpdateJournal::Read(path_);
    ASSERT_TRUE(contents.ok()) << "byte " << at << ": " << contents.status();
    ASSERT_EQ(contents->entries.size(), checked(at) ? 1u : 2u) << "byte " << at;
    ExpectSame(contents->entries[0], Entry(1, 5, 1));
    if (!checked(at)) ExpectSame(contents->entries[1], Entry(2, 5, 2));
  }
}

// Group commit, made deterministic: the first writer's commit is held before its sync until 31
// more writers are queued; they then go out together in one more write and one more sync.
TEST_F(UpdateJournalTest, WritersQueuedDuringACommitShareTheNextOne) {
  absl::Notification release;
  std::atomic<int> syncs{0};
  UpdateJournalOptions options;
  options.before_sync = [&] {
    if (syncs.fetch_add(1) == 0) release.WaitForNotification();
  };
  auto journal = Open(std::move(options));
  std::vector<std::thread> threads;
  threads.emplace_back([&] { EXPECT_TRUE(journal->Append(Entry(0, 64, 0)).ok()); });
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (syncs.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(syncs.load(), 1) << "the first writer is committing";
  for (int i = 1; i < 32; ++i) {
    threads.emplace_back([&, i] { EXPECT_TRUE(journal->Append(Entry(i, 64, i)).ok()); });
  }
  while (journal->queued() < 31 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(journal->queued(), 31);
  release.Notify();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(journal->commits(), 2);
  EXPECT_EQ(journal->entries(), 32);
  std::vector<fl::JournalEntry> read = ReadAll();
  ASSERT_EQ(read.size(), 32u);
  std::sort(read.begin(), read.end(),
            [](const auto& a, const auto& b) { return a.client < b.client; });
  for (int i = 0; i < 32; ++i) ExpectSame(read[i], Entry(i, 64, i));
}

// Where O_DIRECT is refused (tmpfs), the journal writes through the page cache, same format.
TEST_F(UpdateJournalTest, AFileSystemWithoutDirectWritesStillJournals) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  char pattern[] = "/dev/shm/fedcl_journal_XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string path = std::string(pattern) + "/journal.log";
  {
    auto journal = UpdateJournal::Open(path, {});
    ASSERT_TRUE(journal.ok()) << journal.status();
    ASSERT_TRUE((*journal)->Append(Entry(3, 2000, 3)).ok());
  }
  auto contents = UpdateJournal::Read(path);
  std::filesystem::remove_all(pattern);
  ASSERT_TRUE(contents.ok()) << contents.status();
  ASSERT_EQ(contents->entries.size(), 1u);
  ExpectSame(contents->entries[0], Entry(3, 2000, 3));
}

TEST_F(UpdateJournalTest, AFileOfAnotherFormatIsAnEmptyJournalNotAnError) {
  std::ofstream(path_, std::ios::binary) << "SQLite format 3\0 and so on, for a while longer";
  auto contents = UpdateJournal::Read(path_);
  ASSERT_TRUE(contents.ok()) << contents.status();
  EXPECT_TRUE(contents->entries.empty());
  EXPECT_EQ(contents->intact_bytes, 0);
}

}  // namespace
}  // namespace fedcl::server
