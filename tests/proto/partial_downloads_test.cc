// Partial downloads kept on disk (proto/partial_downloads.h): a download killed mid-transfer
// resumes in the next process from its last kept chunk, with the bytes it verified; anything on
// disk that cannot be vouched for (damaged, another version's, bytes after the last record) is
// not trusted. A MemoryFileSystem stands for the disk; a "process" is a store.
#include "proto/partial_downloads.h"

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/base/crc32.h"
#include "core/base/memory_filesystem.h"
#include "gtest/gtest.h"
#include "proto/chunks.h"

namespace fedcl::proto {
namespace {

constexpr int64_t kChunk = 16 << 10;
constexpr int64_t kKeepEvery = 64 << 10;
constexpr int64_t kMax = int64_t{8} << 20;
const std::string kName = "backbone checkpoint";
const std::string kDir = "/device/downloads";

std::string RandomPayload(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return bytes;
}

std::vector<v1::Chunk> ChunksFrom(const std::string& payload, int64_t offset) {
  std::vector<v1::Chunk> chunks;
  ChunkSplitter splitter(payload, base::Crc32(payload), kChunk, offset);
  v1::Chunk chunk;
  while (splitter.Next(&chunk)) chunks.push_back(chunk);
  return chunks;
}

// Feeds the first `count` chunks of `payload` into `assembler` as GrpcPort does: the store keeps
// what arrived every kKeepEvery bytes. Returns false on any error.
void Feed(PartialDownloadStore& store, const std::string& version, ChunkAssembler& assembler,
          const std::vector<v1::Chunk>& chunks, size_t count) {
  for (size_t i = 0; i < count && i < chunks.size(); ++i) {
    ASSERT_TRUE(assembler.Add(chunks[i]).ok());
    ASSERT_TRUE(store.Persist(kName, version, assembler, kKeepEvery).ok());
  }
}

// Resumes `assembler` (restored by a store) with the rest of `payload` and returns the result.
absl::StatusOr<std::string> FinishFrom(ChunkAssembler& assembler, const std::string& payload) {
  assembler.ResumeStream();
  for (const v1::Chunk& chunk : ChunksFrom(payload, assembler.received_bytes())) {
    absl::Status status = assembler.Add(chunk);
    if (!status.ok()) return status;
  }
  return assembler.Finish();
}

TEST(PartialDownloadStoreTest, AKilledDownloadResumesInTheNextProcessFromItsLastKeptChunk) {
  const std::string payload = RandomPayload(1000003, 11);
  const std::vector<v1::Chunk> chunks = ChunksFrom(payload, 0);
  for (size_t killed_after : std::vector<size_t>{1, 3, 4, 5, 37, chunks.size() - 1}) {
    SCOPED_TRACE(killed_after);
    base::MemoryFileSystem fs;
    {
      PartialDownloadStore first(fs, kDir);  // the process that is killed: no final Persist
      ChunkAssembler assembler("backbone", kMax);
      Feed(first, "", assembler, chunks, killed_after);
    }
    PartialDownloadStore second(fs, kDir);
    std::unique_ptr<ChunkAssembler> resumed = second.Load(kName, "", "backbone", kMax);
    const int64_t arrived = static_cast<int64_t>(killed_after) * kChunk;
    if (arrived < kKeepEvery) {
      EXPECT_EQ(resumed, nullptr) << "nothing was kept yet";
      continue;
    }
    ASSERT_NE(resumed, nullptr);
    // At most kKeepEvery (plus the chunk that crossed it) were lost, and what is kept is exact.
    EXPECT_LE(resumed->received_bytes(), arrived);
    EXPECT_GT(resumed->received_bytes(), arrived - kKeepEvery - kChunk);
    EXPECT_EQ(resumed->received_bytes() % kChunk, 0);
    EXPECT_TRUE(resumed->received() == absl::string_view(payload).substr(
                                           0, static_cast<size_t>(resumed->received_bytes())));
    EXPECT_EQ(resumed->total_bytes(), static_cast<int64_t>(payload.size()));
    absl::StatusOr<std::string> whole = FinishFrom(*resumed, payload);
    ASSERT_TRUE(whole.ok()) << whole.status();
    EXPECT_TRUE(*whole == payload);
    EXPECT_EQ(second.discarded(), 0);
  }
}

TEST(PartialDownloadStoreTest, ACallThatEndsShortKeepsEveryVerifiedByte) {
  const std::string payload = RandomPayload(300000, 12);
  const std::vector<v1::Chunk> chunks = ChunksFrom(payload, 0);
  base::MemoryFileSystem fs;
  {
    PartialDownloadStore first(fs, kDir);
    ChunkAssembler assembler("backbone", kMax);
    Feed(first, "", assembler, chunks, 7);
    ASSERT_TRUE(first.Persist(kName, "", assembler, 0).ok());  // the cut stream's last call
  }
  PartialDownloadStore second(fs, kDir);
  std::unique_ptr<ChunkAssembler> resumed = second.Load(kName, "", "backbone", kMax);
  ASSERT_NE(resumed, nullptr);
  EXPECT_EQ(resumed->received_bytes(), 7 * kChunk);
  // Resumed, cut again and kept again: a third process carries on from the second's bytes.
  resumed->ResumeStream();
  const std::vector<v1::Chunk> rest = ChunksFrom(payload, resumed->received_bytes());
  for (size_t i = 0; i < 6; ++i) ASSERT_TRUE(resumed->Add(rest[i]).ok());
  ASSERT_TRUE(second.Persist(kName, "", *resumed, 0).ok());
  PartialDownloadStore third(fs, kDir);
  std::unique_ptr<ChunkAssembler> again = third.Load(kName, "", "backbone", kMax);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->received_bytes(), 13 * kChunk);
  absl::StatusOr<std::string> whole = FinishFrom(*again, payload);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(*whole == payload);
  // Finished: the download removes what it kept.
  third.Remove(kName);
  EXPECT_FALSE(fs.Exists(third.PartPath(kName)));
  EXPECT_FALSE(fs.Exists(third.MetaPath(kName)));
}

// Keeps 7 chunks of `payload` as version `version` in `fs`.
void KeepSevenChunks(base::MemoryFileSystem& fs, const std::string& payload,
                     const std::string& version) {
  PartialDownloadStore store(fs, kDir);
  ChunkAssembler assembler("backbone", kMax);
  const std::vector<v1::Chunk> chunks = ChunksFrom(payload, 0);
  for (size_t i = 0; i < 7; ++i) ASSERT_TRUE(assembler.Add(chunks[i]).ok());
  ASSERT_TRUE(store.Persist(kName, version, assembler, 0).ok());
}

TEST(PartialDownloadStoreTest, WhatCannotBeVouchedForIsDeletedAndTheDownloadStartsOver) {
  const std::string payload = RandomPayload(300000, 13);
  struct Damage {
    const char* what;
    std::function<void(base::MemoryFileSystem&, const PartialDownloadStore&)> apply;
    std::string asked_version = "3";
    int64_t max_bytes = kMax;
  };
  const std::vector<Damage> damages = {
      {"a flipped byte in the kept bytes",
       [](base::MemoryFileSystem& fs, const PartialDownloadStore& s) {
         std::string part = *fs.ReadFile(s.PartPath(kName));
         part[5000] = static_cast<char>(part[5000] ^ 0x10);
         ASSERT_TRUE(fs.WriteFileAtomically(s.PartPath(kName), part).ok());
       }},
      {"kept bytes cut short",
       [](base::MemoryFileSystem& fs, const PartialDownloadStore& s) {
         std::string part = *fs.ReadFile(s.PartPath(kName));
         part.resize(part.size() - 1);
         ASSERT_TRUE(fs.WriteFileAtomically(s.PartPath(kName), part).ok());
       }},
      {"the kept bytes gone",
       [](base::MemoryFileSystem& fs, const PartialDownloadStore& s) {
         ASSERT_TRUE(fs.DeleteFile(s.PartPath(kName)).ok());
       }},
      {"a record that does not parse",
       [](base::MemoryFileSystem& fs, const PartialDownloadStore& s) {
         ASSERT_TRUE(fs.WriteFileAtomically(s.MetaPath(kName), "\xff\xff\xff garbage").ok());
       }},
      {"another version asked", [](base::MemoryFileSystem&, const PartialDownloadStore&) {}, "4"},
      {"a payload over the device's limit now",
       [](base::MemoryFileSystem&, const PartialDownloadStore&) {}, "3", 200000},
  };
  for (const Damage& damage : damages) {
    SCOPED_TRACE(damage.what);
    base::MemoryFileSystem fs;
    KeepSevenChunks(fs, payload, "3");
    PartialDownloadStore store(fs, kDir);
    damage.apply(fs, store);
    EXPECT_EQ(store.Load(kName, damage.asked_version, "backbone", damage.max_bytes), nullptr);
    EXPECT_EQ(store.discarded(), 1);
    EXPECT_FALSE(fs.Exists(store.PartPath(kName)));
    EXPECT_FALSE(fs.Exists(store.MetaPath(kName)));
    // Nothing is left to trip the next process either.
    PartialDownloadStore next(fs, kDir);
    EXPECT_EQ(next.Load(kName, "3", "backbone", kMax), nullptr);
    EXPECT_EQ(next.discarded(), 0);
  }
}

TEST(PartialDownloadStoreTest, BytesAppendedAfterTheLastRecordAreCutOff) {
  // A crash between an append and its record: .part is longer than the record vouches for.
  const std::string payload = RandomPayload(300000, 14);
  base::MemoryFileSystem fs;
  KeepSevenChunks(fs, payload, "");
  PartialDownloadStore store(fs, kDir);
  ASSERT_TRUE(fs.AppendToFile(store.PartPath(kName), std::string(5000, 'x')).ok());
  std::unique_ptr<ChunkAssembler> resumed = store.Load(kName, "", "backbone", kMax);
  ASSERT_NE(resumed, nullptr);
  EXPECT_EQ(resumed->received_bytes(), 7 * kChunk);
  EXPECT_EQ(fs.ReadFile(store.PartPath(kName))->size(), size_t{7 * kChunk});
  // The next append continues the verified prefix, and a later process gets exact bytes.
  resumed->ResumeStream();
  const std::vector<v1::Chunk> rest = ChunksFrom(payload, resumed->received_bytes());
  for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(resumed->Add(rest[i]).ok());
  ASSERT_TRUE(store.Persist(kName, "", *resumed, 0).ok());
  PartialDownloadStore later(fs, kDir);
  std::unique_ptr<ChunkAssembler> again = later.Load(kName, "", "backbone", kMax);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->received_bytes(), 10 * kChunk);
  absl::StatusOr<std::string> whole = FinishFrom(*again, payload);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_TRUE(*whole == payload);
}

TEST(PartialDownloadStoreTest, AFreshDownloadReplacesWhatAnotherVersionKept) {
  const std::string v3 = RandomPayload(300000, 15), v4 = RandomPayload(250000, 16);
  base::MemoryFileSystem fs;
  KeepSevenChunks(fs, v3, "3");
  PartialDownloadStore store(fs, kDir);
  EXPECT_EQ(store.Load(kName, "4", "backbone", kMax), nullptr);  // version 3's is deleted
  ChunkAssembler fresh("backbone", kMax);
  const std::vector<v1::Chunk> chunks = ChunksFrom(v4, 0);
  for (size_t i = 0; i < 2; ++i) ASSERT_TRUE(fresh.Add(chunks[i]).ok());
  ASSERT_TRUE(store.Persist(kName, "4", fresh, 0).ok());
  PartialDownloadStore later(fs, kDir);
  EXPECT_EQ(later.Load(kName, "3", "backbone", kMax), nullptr);
  KeepSevenChunks(fs, v3, "3");  // and back: version 3 replaces version 4's
  std::unique_ptr<ChunkAssembler> kept = later.Load(kName, "3", "backbone", kMax);
  ASSERT_NE(kept, nullptr);
  EXPECT_TRUE(kept->received() == absl::string_view(v3).substr(0, 7 * kChunk));
}

TEST(PartialDownloadStoreTest, AFailedWriteKeepsNothingRatherThanSomethingMisaligned) {
  const std::string payload = RandomPayload(300000, 17);
  base::MemoryFileSystem fs;
  PartialDownloadStore store(fs, kDir);
  ChunkAssembler assembler("backbone", kMax);
  const std::vector<v1::Chunk> chunks = ChunksFrom(payload, 0);
  for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(assembler.Add(chunks[i]).ok());
  ASSERT_TRUE(store.Persist(kName, "", assembler, 0).ok());
  for (size_t i = 3; i < 6; ++i) ASSERT_TRUE(assembler.Add(chunks[i]).ok());
  fs.FailNextWrites(1, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(absl::IsResourceExhausted(store.Persist(kName, "", assembler, 0)));
  EXPECT_FALSE(fs.Exists(store.PartPath(kName)));
  // The next persist starts the file again from offset 0, so what is kept is still exact.
  ASSERT_TRUE(store.Persist(kName, "", assembler, 0).ok());
  PartialDownloadStore later(fs, kDir);
  std::unique_ptr<ChunkAssembler> kept = later.Load(kName, "", "backbone", kMax);
  ASSERT_NE(kept, nullptr);
  EXPECT_TRUE(kept->received() == absl::string_view(payload).substr(0, 6 * kChunk));
}

TEST(PartialDownloadStoreTest, LongNamesGetFileNamesOfTheirOwn) {
  base::MemoryFileSystem fs;
  PartialDownloadStore store(fs, kDir);
  const std::string a = "module:" + std::string(300, 'a'), b = "module:" + std::string(300, 'b');
  EXPECT_NE(store.PartPath(a), store.PartPath(b));
  EXPECT_LT(store.PartPath(a).size(), kDir.size() + 40);
  EXPECT_NE(store.PartPath("module:head"), store.PartPath("module:Head"));
}

}  // namespace
}  // namespace fedcl::proto
