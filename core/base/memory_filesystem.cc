#include "core/base/memory_filesystem.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fedcl::base {
namespace {

std::string DirectoryPrefix(absl::string_view path) {
  std::string prefix(path);
  if (prefix.empty() || prefix.back() != '/') prefix.push_back('/');
  return prefix;
}

}  // namespace

absl::StatusOr<std::string> MemoryFileSystem::ReadFile(absl::string_view path,
                                                       uint64_t max_bytes) const {
  if (path.empty()) return absl::InvalidArgumentError("empty file path");
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("no such file '", path, "'"));
  if (it->second.size() > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("file '", path, "' has ", it->second.size(),
                                                     " bytes, more than the limit of ", max_bytes));
  }
  return it->second;
}

absl::Status MemoryFileSystem::WriteFileAtomically(absl::string_view path,
                                                   absl::string_view contents, Sync /*sync*/) {
  if (path.empty()) return absl::InvalidArgumentError("empty file path");
  absl::MutexLock lock(&mu_);
  if (writes_to_fail_ > 0) {
    --writes_to_fail_;
    return write_failure_;
  }
  files_[std::string(path)] = std::string(contents);
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::AppendToFile(absl::string_view path, absl::string_view contents) {
  if (path.empty()) return absl::InvalidArgumentError("empty file path");
  absl::MutexLock lock(&mu_);
  if (writes_to_fail_ > 0) {
    --writes_to_fail_;
    return write_failure_;
  }
  files_[std::string(path)].append(contents.data(), contents.size());
  return absl::OkStatus();
}

bool MemoryFileSystem::Exists(absl::string_view path) const {
  absl::MutexLock lock(&mu_);
  if (files_.count(path) > 0 || directories_.count(path) > 0) return true;
  std::string prefix = DirectoryPrefix(path);
  auto it = files_.lower_bound(prefix);
  return it != files_.end() && absl::StartsWith(it->first, prefix);
}

absl::Status MemoryFileSystem::DeleteFile(absl::string_view path) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("no such file '", path, "'"));
  files_.erase(it);
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::RenameFile(absl::string_view from, absl::string_view to) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(from);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("no such file '", from, "'"));
  std::string contents = std::move(it->second);
  files_.erase(it);
  files_[std::string(to)] = std::move(contents);
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::CreateDirectories(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("empty directory path");
  absl::MutexLock lock(&mu_);
  if (files_.count(path) > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", path, "' exists and is not a directory"));
  }
  directories_.insert(std::string(path));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MemoryFileSystem::ListDirectory(
    absl::string_view path) const {
  absl::MutexLock lock(&mu_);
  std::string prefix = DirectoryPrefix(path);
  std::set<std::string> names;
  for (auto it = files_.lower_bound(prefix); it != files_.end(); ++it) {
    if (!absl::StartsWith(it->first, prefix)) break;
    absl::string_view rest = absl::string_view(it->first).substr(prefix.size());
    names.insert(std::string(rest.substr(0, rest.find('/'))));
  }
  if (names.empty() && directories_.count(path) == 0) {
    return absl::NotFoundError(absl::StrCat("no such directory '", path, "'"));
  }
  return std::vector<std::string>(names.begin(), names.end());
}

void MemoryFileSystem::SetFile(absl::string_view path, absl::string_view contents) {
  absl::MutexLock lock(&mu_);
  files_[std::string(path)] = std::string(contents);
}

void MemoryFileSystem::FailNextWrites(int count, absl::Status status) {
  absl::MutexLock lock(&mu_);
  writes_to_fail_ = count;
  write_failure_ = std::move(status);
}

}  // namespace fedcl::base
