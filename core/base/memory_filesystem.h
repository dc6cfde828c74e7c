// An in-memory FileSystem for tests and for the simulator's virtual devices.
//
// Paths are plain strings; directories exist implicitly (a path "exists" as a directory when some
// file lies under it, or after CreateDirectories). Writes are atomic by construction. For fault
// injection, `FailNextWrites(n, status)` makes the next n writes fail without touching the stored
// file, which is what a failed atomic write must look like.
//
// Thread-safe.
#ifndef FEDCL_CORE_BASE_MEMORY_FILESYSTEM_H_
#define FEDCL_CORE_BASE_MEMORY_FILESYSTEM_H_

#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/base/filesystem.h"

namespace fedcl::base {

class MemoryFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::string> ReadFile(
      absl::string_view path,
      uint64_t max_bytes = std::numeric_limits<uint64_t>::max()) const override;
  using FileSystem::WriteFileAtomically;
  absl::Status WriteFileAtomically(absl::string_view path, absl::string_view contents,
                                   Sync sync) override;
  absl::Status AppendToFile(absl::string_view path, absl::string_view contents) override;
  bool Exists(absl::string_view path) const override;
  absl::Status DeleteFile(absl::string_view path) override;
  absl::Status RenameFile(absl::string_view from, absl::string_view to) override;
  absl::Status CreateDirectories(absl::string_view path) override;
  absl::StatusOr<std::vector<std::string>> ListDirectory(absl::string_view path) const override;

  // Stores `contents` directly, bypassing fault injection (for setting up a test).
  void SetFile(absl::string_view path, absl::string_view contents);

  // The next `count` calls to WriteFileAtomically or AppendToFile fail with `status` and change
  // nothing.
  void FailNextWrites(int count, absl::Status status);

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::string, std::less<>> files_ ABSL_GUARDED_BY(mu_);
  std::set<std::string, std::less<>> directories_ ABSL_GUARDED_BY(mu_);
  int writes_to_fail_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status write_failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_MEMORY_FILESYSTEM_H_
