// The default FileSystem over POSIX calls.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "core/base/status_macros.h"

namespace fedcl::base {
namespace {

absl::Status ErrnoStatus(absl::string_view what, absl::string_view path, int error) {
  std::string message = absl::StrCat(what, " '", path, "': ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == ENOSPC || error == EDQUOT) return absl::ResourceExhaustedError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

// Closes a file descriptor when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now and reports the error close() returned (it can report a failed write-back).
  int Close() {
    int result = ::close(fd_);
    fd_ = -1;
    return result;
  }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, absl::string_view path, absl::string_view contents) {
  const char* data = contents.data();
  size_t remaining = contents.size();
  while (remaining > 0) {
    ssize_t written = ::write(fd, data, remaining);
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot write", path, errno);
    }
    data += written;
    remaining -= static_cast<size_t>(written);
  }
  return absl::OkStatus();
}

class PosixFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::string> ReadFile(absl::string_view path, uint64_t max_bytes) const override {
    if (path.empty()) return absl::InvalidArgumentError("empty file path");
    std::string p(path);
    ScopedFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoStatus("cannot open", path, errno);
    struct stat info;
    if (::fstat(fd.get(), &info) != 0) return ErrnoStatus("cannot stat", path, errno);
    if (S_ISDIR(info.st_mode))
      return absl::InvalidArgumentError(absl::StrCat("'", path, "' is a directory"));
    if (static_cast<uint64_t>(info.st_size) > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "file '", path, "' has ", info.st_size, " bytes, more than the limit of ", max_bytes));
    }
    std::string contents;
    contents.resize(static_cast<size_t>(info.st_size));
    size_t done = 0;
    while (done < contents.size()) {
      ssize_t got = ::read(fd.get(), contents.data() + done, contents.size() - done);
      if (got < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("cannot read", path, errno);
      }
      if (got == 0) break;  // The file shrank under us; return what is there.
      done += static_cast<size_t>(got);
    }
    contents.resize(done);
    return contents;
  }

  using FileSystem::WriteFileAtomically;
  absl::Status WriteFileAtomically(absl::string_view path, absl::string_view contents,
                                   Sync sync) override {
    if (path.empty()) return absl::InvalidArgumentError("empty file path");
    static std::atomic<uint64_t> counter{0};
    std::string target(path);
    std::string temp = absl::StrCat(target, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
    {
      ScopedFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (fd.get() < 0) return ErrnoStatus("cannot create", temp, errno);
      absl::Status status = WriteAll(fd.get(), temp, contents);
      if (status.ok() && sync == Sync::kDurable && ::fsync(fd.get()) != 0) {
        status = ErrnoStatus("cannot sync", temp, errno);
      }
      if (status.ok() && fd.Close() != 0) status = ErrnoStatus("cannot close", temp, errno);
      if (!status.ok()) {
        ::unlink(temp.c_str());
        return status;
      }
    }
    if (::rename(temp.c_str(), target.c_str()) != 0) {
      int error = errno;
      ::unlink(temp.c_str());
      return ErrnoStatus("cannot rename temporary file onto", path, error);
    }
    if (sync != Sync::kDurable) return absl::OkStatus();
    // Make the rename itself durable.
    std::string dir = DirName(target);
    ScopedFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir_fd.get() >= 0) ::fsync(dir_fd.get());
    return absl::OkStatus();
  }

  bool Exists(absl::string_view path) const override {
    struct stat info;
    return ::stat(std::string(path).c_str(), &info) == 0;
  }

  absl::Status AppendToFile(absl::string_view path, absl::string_view contents) override {
    if (path.empty()) return absl::InvalidArgumentError("empty file path");
    const std::string target(path);
    ScopedFd fd(::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (fd.get() < 0) return ErrnoStatus("cannot open for appending", path, errno);
    FEDCL_RETURN_IF_ERROR(WriteAll(fd.get(), target, contents));
    if (fd.Close() != 0) return ErrnoStatus("cannot close", path, errno);
    return absl::OkStatus();
  }

  absl::Status DeleteFile(absl::string_view path) override {
    if (::unlink(std::string(path).c_str()) != 0) return ErrnoStatus("cannot delete", path, errno);
    return absl::OkStatus();
  }

  absl::Status RenameFile(absl::string_view from, absl::string_view to) override {
    if (::rename(std::string(from).c_str(), std::string(to).c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("cannot rename to '", to, "' from"), from, errno);
    }
    return absl::OkStatus();
  }

  absl::Status CreateDirectories(absl::string_view path) override {
    if (path.empty()) return absl::InvalidArgumentError("empty directory path");
    std::string p(path);
    for (size_t pos = 1; pos <= p.size(); ++pos) {
      if (pos != p.size() && p[pos] != '/') continue;
      std::string prefix = p.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus("cannot create directory", prefix, errno);
      }
    }
    struct stat info;
    if (::stat(p.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("'", path, "' exists and is not a directory"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListDirectory(absl::string_view path) const override {
    DIR* dir = ::opendir(std::string(path).c_str());
    if (dir == nullptr) return ErrnoStatus("cannot list directory", path, errno);
    std::vector<std::string> names;
    while (struct dirent* entry = ::readdir(dir)) {
      absl::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }
};

}  // namespace

FileSystem& FileSystem::Default() {
  static PosixFileSystem* const file_system = new PosixFileSystem();
  return *file_system;
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  bool a_slash = a.back() == '/';
  bool b_slash = b.front() == '/';
  if (a_slash && b_slash) return absl::StrCat(a, b.substr(1));
  if (a_slash || b_slash) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

std::string DirName(absl::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

}  // namespace fedcl::base
