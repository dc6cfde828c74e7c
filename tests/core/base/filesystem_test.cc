#include "core/base/filesystem.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/base/memory_filesystem.h"
#include "gtest/gtest.h"

namespace fedcl::base {
namespace {

class PosixFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_fs_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
  FileSystem& fs_ = FileSystem::Default();
};

TEST_F(PosixFileSystemTest, AtomicWriteThenReadRoundTrips) {
  std::string path = JoinPath(dir_, "a.bin");
  std::string contents("hello\0world", 11);
  ASSERT_TRUE(fs_.WriteFileAtomically(path, contents).ok());
  auto read = fs_.ReadFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, contents);
}

TEST_F(PosixFileSystemTest, AtomicWriteReplacesAndLeavesNoTemporaryFiles) {
  std::string path = JoinPath(dir_, "state");
  ASSERT_TRUE(fs_.WriteFileAtomically(path, "old").ok());
  ASSERT_TRUE(fs_.WriteFileAtomically(path, "new contents").ok());
  EXPECT_EQ(*fs_.ReadFile(path), "new contents");
  auto names = fs_.ListDirectory(dir_);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"state"});
}

TEST_F(PosixFileSystemTest, MissingFileIsNotFoundAndNamesThePath) {
  auto read = fs_.ReadFile(JoinPath(dir_, "nope"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find("nope"), std::string::npos);
}

TEST_F(PosixFileSystemTest, ReadRefusesFilesOverTheLimit) {
  std::string path = JoinPath(dir_, "big");
  ASSERT_TRUE(fs_.WriteFileAtomically(path, std::string(100, 'x')).ok());
  EXPECT_EQ(fs_.ReadFile(path, 99).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(fs_.ReadFile(path, 100).ok());
}

TEST_F(PosixFileSystemTest, WriteIntoMissingDirectoryFailsCleanly) {
  absl::Status status = fs_.WriteFileAtomically(JoinPath(dir_, "no/such/dir/file"), "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
}

TEST_F(PosixFileSystemTest, CreateDirectoriesMakesParents) {
  std::string nested = JoinPath(dir_, "a/b/c");
  ASSERT_TRUE(fs_.CreateDirectories(nested).ok());
  EXPECT_TRUE(fs_.Exists(nested));
  EXPECT_TRUE(fs_.CreateDirectories(nested).ok());  // idempotent
}

TEST(MemoryFileSystemTest, FailedWriteKeepsThePreviousContents) {
  MemoryFileSystem fs;
  ASSERT_TRUE(fs.WriteFileAtomically("/s/model", "good").ok());
  fs.FailNextWrites(1, absl::ResourceExhaustedError("disk full"));
  EXPECT_EQ(fs.WriteFileAtomically("/s/model", "half").code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*fs.ReadFile("/s/model"), "good");
  EXPECT_TRUE(fs.WriteFileAtomically("/s/model", "better").ok());
  EXPECT_EQ(*fs.ReadFile("/s/model"), "better");
}

TEST(MemoryFileSystemTest, ListsImmediateChildren) {
  MemoryFileSystem fs;
  fs.SetFile("/d/a", "1");
  fs.SetFile("/d/sub/b", "2");
  fs.SetFile("/other", "3");
  EXPECT_EQ(*fs.ListDirectory("/d"), (std::vector<std::string>{"a", "sub"}));
  EXPECT_TRUE(fs.Exists("/d/sub"));
  EXPECT_FALSE(fs.Exists("/e"));
}

TEST(PathTest, JoinAndDirName) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "/b"), "a/b");
  EXPECT_EQ(DirName("/x/y/z"), "/x/y");
  EXPECT_EQ(DirName("z"), ".");
  EXPECT_EQ(DirName("/z"), "/");
}

}  // namespace
}  // namespace fedcl::base
