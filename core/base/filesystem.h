// The only way fedcl's core touches files.
//
// Library code receives a `FileSystem&` and never calls the OS directly, so tests can substitute
// `MemoryFileSystem` (see memory_filesystem.h) or wrap either one to inject faults: a torn write,
// a full disk, a failing rename. Hosts pass `FileSystem::Default()`.
//
//   base::FileSystem& fs = base::FileSystem::Default();
//   FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs.ReadFile("/data/train-labels-idx1-ubyte.gz"));
//   FEDCL_RETURN_IF_ERROR(fs.WriteFileAtomically("/state/model.ckpt", serialized));
//
// Error codes: NotFound for a missing path, InvalidArgument for an empty path, ResourceExhausted
// when a file is larger than the caller's limit, Internal for other OS failures. Every message
// names the path. Implementations are thread-safe.
#ifndef FEDCL_CORE_BASE_FILESYSTEM_H_
#define FEDCL_CORE_BASE_FILESYSTEM_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedcl::base {

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // The process-wide POSIX file system. Never null; lives for the whole program.
  static FileSystem& Default();

  // Reads a whole file. Refuses (ResourceExhausted) files larger than `max_bytes`, before
  // allocating, so a hostile path cannot make us allocate unbounded memory.
  virtual absl::StatusOr<std::string> ReadFile(
      absl::string_view path, uint64_t max_bytes = std::numeric_limits<uint64_t>::max()) const = 0;

  // How far WriteFileAtomically goes before it returns.
  enum class Sync {
    kDurable,    // fsync the file and its directory: the new contents survive a power cut
    kCrashSafe,  // no fsync: survives a crash of this process (the kernel has the data), not a
                 // power cut; much cheaper on slow disks
  };

  // Replaces `path` with `contents` so that a crash at any point leaves either the old or the new
  // file, never a mix: write a temporary file beside it, (kDurable) flush it to stable storage,
  // rename it over `path`, then (kDurable) sync the directory.
  virtual absl::Status WriteFileAtomically(absl::string_view path, absl::string_view contents,
                                           Sync sync) = 0;
  absl::Status WriteFileAtomically(absl::string_view path, absl::string_view contents) {
    return WriteFileAtomically(path, contents, Sync::kDurable);
  }

  // Appends `contents` to `path` (created if missing), with no fsync: for files whose readers
  // trust only the prefix a separately written record vouches for (partial downloads). A failure
  // may leave part of `contents` appended.
  virtual absl::Status AppendToFile(absl::string_view path, absl::string_view contents) = 0;

  virtual bool Exists(absl::string_view path) const = 0;

  // Removes a file. NotFound if it does not exist.
  virtual absl::Status DeleteFile(absl::string_view path) = 0;

  // Renames a file, replacing `to` if it exists.
  virtual absl::Status RenameFile(absl::string_view from, absl::string_view to) = 0;

  // Creates `path` and any missing parents. OK if it already exists as a directory.
  virtual absl::Status CreateDirectories(absl::string_view path) = 0;

  // Names (not paths) of the entries of a directory, sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDirectory(absl::string_view path) const = 0;
};

// Joins two path components with exactly one '/'.
std::string JoinPath(absl::string_view a, absl::string_view b);

// The directory part of `path` ("." if it has none).
std::string DirName(absl::string_view path);

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_FILESYSTEM_H_
