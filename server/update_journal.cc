#include "server/update_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"

namespace fedcl::server {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "journal records are little-endian and are written from memory as is");

constexpr char kMagic[4] = {'F', 'J', 'R', '1'};
constexpr size_t kHeaderBytes = 16;  // magic, CRC, length
constexpr size_t kBlock = 4096;      // records start and end on these boundaries (O_DIRECT)
// The flags byte of a record's metadata.
constexpr uint8_t kClipped = 1;
constexpr uint8_t kHasBaseRound = 2;

size_t RoundUp(size_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

struct Free {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<char[], Free>;

// `size` bytes (a multiple of kBlock) on a kBlock boundary, zeroed.
AlignedBytes NewBlocks(size_t size) {
  char* p = static_cast<char*>(std::aligned_alloc(kBlock, std::max(size, kBlock)));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, size);
  return AlignedBytes(p);
}

absl::Status Errno(absl::string_view what, const std::string& path, int error) {
  return absl::InternalError(
      absl::StrCat("update journal '", path, "': ", what, ": ", std::strerror(error)));
}

template <typename T>
void Put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// Reads what a record's payload holds, in order; false once it runs out.
class PayloadReader {
 public:
  explicit PayloadReader(absl::string_view payload) : rest_(payload) {}
  template <typename T>
  bool Get(T* value) {
    if (rest_.size() < sizeof(T)) return false;
    std::memcpy(value, rest_.data(), sizeof(T));
    rest_.remove_prefix(sizeof(T));
    return true;
  }
  bool GetBytes(size_t size, std::string* out) {
    if (rest_.size() < size) return false;
    out->assign(rest_.data(), size);
    rest_.remove_prefix(size);
    return true;
  }
  absl::string_view rest() const { return rest_; }

 private:
  absl::string_view rest_;
};

// The payload up to (not including) the values, for `entry` with `values` floats.
std::string EncodeMeta(const fl::JournalEntry& e, uint64_t values) {
  std::string meta;
  Put<int64_t>(meta, e.round);
  Put<uint64_t>(meta, e.client);
  Put<double>(meta, e.weight);
  // Bit 1 and the base round were added with asynchronous rounds; records without them read
  // as before.
  const bool has_base = e.base_round >= 0;
  Put<uint8_t>(meta, (e.clipped ? kClipped : 0) | (has_base ? kHasBaseRound : 0));
  if (has_base) Put<int64_t>(meta, e.base_round);
  Put<int64_t>(meta, e.num_samples);
  Put<int64_t>(meta, e.local_steps);
  Put<double>(meta, e.loss);
  Put<uint32_t>(meta, static_cast<uint32_t>(e.module_names.size()));
  for (const std::string& name : e.module_names) {
    Put<uint32_t>(meta, static_cast<uint32_t>(name.size()));
    meta += name;
  }
  Put<uint64_t>(meta, values);
  return meta;
}

// The record whose header was `header` and whose rest is `body`, if it parses and its checksum
// holds; nullopt for a torn or corrupt record.
std::optional<fl::JournalEntry> DecodeRecord(const char* header, absl::string_view body,
                                             bool keep_values) {
  fl::JournalEntry e;
  PayloadReader in(body);
  uint8_t flags = 0;
  uint32_t modules = 0;
  bool ok = in.Get(&e.round) && in.Get(&e.client) && in.Get(&e.weight) && in.Get(&flags) &&
            (flags & ~(kClipped | kHasBaseRound)) == 0 &&
            ((flags & kHasBaseRound) == 0 || (in.Get(&e.base_round) && e.base_round >= 0)) &&
            in.Get(&e.num_samples) && in.Get(&e.local_steps) && in.Get(&e.loss) &&
            in.Get(&modules) && modules <= in.rest().size();
  for (uint32_t i = 0; ok && i < modules; ++i) {
    uint32_t size = 0;
    ok = in.Get(&size) && in.GetBytes(size, &e.module_names.emplace_back());
  }
  uint64_t count = 0;
  ok = ok && in.Get(&count) && count <= body.size() / sizeof(float);
  if (!ok) return std::nullopt;
  const size_t meta = body.size() - in.rest().size();
  const size_t values_at = RoundUp(kHeaderBytes + meta) - kHeaderBytes;
  const size_t bytes = count * sizeof(float);
  if (kHeaderBytes + body.size() != RoundUp(kHeaderBytes + meta) + RoundUp(bytes)) {
    return std::nullopt;
  }
  const absl::string_view values = body.substr(values_at, bytes);
  uint32_t crc = base::Crc32(absl::string_view(header + 8, 8));
  crc = base::Crc32(values, base::Crc32(body.substr(0, meta), crc));
  uint32_t stored = 0;
  std::memcpy(&stored, header + 4, 4);
  if (crc != stored) return std::nullopt;
  e.clipped = (flags & kClipped) != 0;
  if (keep_values) {
    e.values.resize(count);
    std::memcpy(e.values.data(), values.data(), bytes);
  }
  return e;
}

// Reads exactly `size` bytes at `offset`; false at the end of the file.
absl::StatusOr<bool> ReadAt(int fd, char* out, size_t size, int64_t offset,
                            const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, out, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("cannot read", path, errno);
    if (n == 0) return false;
    out += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return true;
}

// Writes every byte of `iov` at `offset`, however the kernel splits it.
bool WriteAllAt(int fd, std::vector<iovec>& iov, int64_t offset) {
  size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t n = ::pwritev(fd, iov.data() + first, count, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    offset += n;
    for (size_t left = static_cast<size_t>(n); left > 0;) {
      const size_t step = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + step;
      iov[first].iov_len -= step;
      left -= step;
      if (iov[first].iov_len == 0) ++first;
    }
    while (first < iov.size() && iov[first].iov_len == 0) ++first;
  }
  return true;
}

}  // namespace

// One record waiting to be committed, encoded by the appending thread (checksum included): the
// header and metadata, padded to a block; the values' whole blocks, from the caller's buffer when
// it is aligned; and the rest of the values, copied and padded to a block.
struct UpdateJournal::Pending {
  AlignedBytes head;
  size_t head_bytes = 0;
  absl::Span<const char> direct;
  AlignedBytes tail;
  size_t tail_bytes = 0;
  int64_t bytes = 0;
  bool done = false;
  absl::Status status;
};

absl::StatusOr<JournalContents> UpdateJournal::Read(const std::string& path, bool values) {
  JournalContents contents;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return contents;
  if (fd < 0) return Errno("cannot open", path, errno);
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    return Errno("cannot stat", path, error);
  }
  contents.file_bytes = info.st_size;
  std::string body;
  absl::Status status;
  for (int64_t at = 0; at + static_cast<int64_t>(kHeaderBytes) <= contents.file_bytes;) {
    char header[kHeaderBytes];
    absl::StatusOr<bool> got = ReadAt(fd, header, kHeaderBytes, at, path);
    if (!got.ok() || !*got) {
      status = got.status();
      break;
    }
    uint64_t length = 0;
    std::memcpy(&length, header + 8, 8);
    const int64_t rest = contents.file_bytes - at - static_cast<int64_t>(kHeaderBytes);
    if (std::memcmp(header, kMagic, 4) != 0 || length > static_cast<uint64_t>(rest) ||
        (kHeaderBytes + length) % kBlock != 0) {
      break;
    }
    body.resize(length);
    got = ReadAt(fd, body.data(), length, at + kHeaderBytes, path);
    if (!got.ok() || !*got) {
      status = got.status();
      break;
    }
    std::optional<fl::JournalEntry> entry = DecodeRecord(header, body, values);
    if (!entry.has_value()) break;
    contents.entries.push_back(*std::move(entry));
    at += static_cast<int64_t>(kHeaderBytes + length);
    contents.intact_bytes = at;
  }
  ::close(fd);
  if (!status.ok()) return status;
  return contents;
}

absl::StatusOr<std::unique_ptr<UpdateJournal>> UpdateJournal::Open(const std::string& path,
                                                                   UpdateJournalOptions options) {
  absl::StatusOr<JournalContents> contents = Read(path, /*values=*/false);
  if (!contents.ok()) return contents.status();
  // O_DIRECT where the file system has it; the page cache otherwise.
  bool direct = options.direct;
  int fd = direct ? ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT, 0644) : -1;
  if (fd < 0) {
    direct = false;
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  }
  if (fd < 0) return Errno("cannot open", path, errno);
  if (options.sync) {
    // The file's directory entry, so that a created journal survives a power cut too.
    const std::string dir = path.substr(0, path.find_last_of('/') + 1);
    const int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
  }
  std::unique_ptr<UpdateJournal> journal(
      new UpdateJournal(fd, direct, path, std::move(options), contents->intact_bytes));
  if (contents->file_bytes > contents->intact_bytes) {
    // A torn or corrupt tail: records appended from now on must directly follow the intact ones.
    if (::ftruncate(fd, contents->intact_bytes) != 0 ||
        (journal->options_.sync && ::fdatasync(fd) != 0)) {
      return Errno("cannot cut off the torn tail", path, errno);
    }
  }
  return journal;
}

UpdateJournal::UpdateJournal(int fd, bool direct, std::string path, UpdateJournalOptions options,
                             int64_t end)
    : fd_(fd), direct_(direct), path_(std::move(path)), options_(std::move(options)), end_(end) {}

UpdateJournal::~UpdateJournal() { ::close(fd_); }

absl::Status UpdateJournal::Append(const fl::JournalEntry& entry) {
  // The values as one run of bytes: the views, which the coordinator takes from one buffer in
  // order, are usually contiguous; else (or for entry.values) they are gathered once.
  std::vector<absl::Span<const float>> views = entry.views;
  if (views.empty()) views.push_back(entry.values);
  uint64_t count = 0;
  bool contiguous = true;
  for (size_t i = 0; i < views.size(); ++i) {
    count += views[i].size();
    contiguous =
        contiguous && (i == 0 || views[i].data() == views[i - 1].data() + views[i - 1].size());
  }
  const size_t value_bytes = count * sizeof(float);
  Pending pending;
  AlignedBytes gathered;
  const char* values = reinterpret_cast<const char*>(views[0].data());
  const bool aligned = contiguous && reinterpret_cast<uintptr_t>(values) % kBlock == 0;
  if (!aligned) {
    gathered = NewBlocks(RoundUp(value_bytes));
    size_t at = 0;
    for (absl::Span<const float> v : views) {
      if (!v.empty()) std::memcpy(gathered.get() + at, v.data(), v.size() * sizeof(float));
      at += v.size() * sizeof(float);
    }
    values = gathered.get();
  }
  const std::string meta = EncodeMeta(entry, count);
  const uint64_t length = RoundUp(kHeaderBytes + meta.size()) - kHeaderBytes + RoundUp(value_bytes);
  pending.head_bytes = RoundUp(kHeaderBytes + meta.size());
  pending.head = NewBlocks(pending.head_bytes);
  std::memcpy(pending.head.get() + 8, &length, 8);
  uint32_t crc = base::Crc32(absl::string_view(pending.head.get() + 8, 8));
  crc = base::Crc32(absl::string_view(values, value_bytes), base::Crc32(meta, crc));
  std::memcpy(pending.head.get(), kMagic, 4);
  std::memcpy(pending.head.get() + 4, &crc, 4);
  std::memcpy(pending.head.get() + kHeaderBytes, meta.data(), meta.size());
  // Whole blocks go from the values' own buffer; the last partial one through a padded copy.
  const size_t whole = aligned ? value_bytes / kBlock * kBlock : RoundUp(value_bytes);
  pending.direct = absl::MakeConstSpan(values, whole);
  if (whole < value_bytes) {
    pending.tail_bytes = kBlock;
    pending.tail = NewBlocks(kBlock);
    std::memcpy(pending.tail.get(), values + whole, value_bytes - whole);
  }
  pending.bytes = static_cast<int64_t>(kHeaderBytes + length);

  absl::MutexLock lock(&mu_);
  queue_.push_back(&pending);
  while (!pending.done) {
    if (committing_) {
      // Another thread is committing; our record may be in its batch. Look again after it.
      mu_.Await(absl::Condition(
          +[](bool* committing) { return !*committing; }, &committing_));
      continue;
    }
    // Lead: commit everything queued so far in one write and one sync.
    committing_ = true;
    std::deque<Pending*> batch;
    batch.swap(queue_);
    const int64_t at = end_;
    mu_.Unlock();
    const absl::Status status = Commit(batch, at);
    mu_.Lock();
    for (Pending* p : batch) {
      p->status = status;
      p->done = true;
      if (status.ok()) end_ += p->bytes;
    }
    ++commits_;
    entries_ += static_cast<int64_t>(batch.size());
    committing_ = false;
  }
  return pending.status;
}

absl::Status UpdateJournal::Commit(const std::deque<Pending*>& batch, int64_t at) {
  std::vector<iovec> iov;
  for (Pending* p : batch) {
    iov.push_back({p->head.get(), p->head_bytes});
    if (!p->direct.empty()) iov.push_back({const_cast<char*>(p->direct.data()), p->direct.size()});
    if (p->tail_bytes > 0) iov.push_back({p->tail.get(), p->tail_bytes});
  }
  std::vector<iovec> attempt = iov;
  bool ok = WriteAllAt(fd_, attempt, at);
  if (!ok && errno == EINVAL && direct_ && FallBackToBufferedWrites()) {
    attempt = iov;  // the kernel refused the direct write (alignment, file system): once more
    ok = WriteAllAt(fd_, attempt, at);
  }
  if (ok && options_.before_sync) options_.before_sync();
  if (ok && options_.sync) ok = ::fdatasync(fd_) == 0;
  if (ok) return absl::OkStatus();
  const int error = errno;
  // Nothing of the batch may stay for later records to follow: cut the file back. Should that
  // fail too, the next commit still writes at `at`, over what this one left.
  const bool cut = ::ftruncate(fd_, at) == 0;
  return absl::UnavailableError(absl::StrCat("update journal '", path_, "': cannot write or sync ",
                                             batch.size(), " record(s): ", std::strerror(error),
                                             "; none of them counts",
                                             cut ? "" : " (and the file was not cut back)"));
}

bool UpdateJournal::FallBackToBufferedWrites() {
  const int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd_);
  fd_ = fd;
  direct_ = false;
  return true;
}

absl::Status UpdateJournal::Reset() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* committing) { return !*committing; }, &committing_));
  if (::ftruncate(fd_, 0) != 0) return Errno("cannot truncate", path_, errno);
  end_ = 0;
  return absl::OkStatus();
}

int64_t UpdateJournal::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

int64_t UpdateJournal::entries() const {
  absl::MutexLock lock(&mu_);
  return entries_;
}

int UpdateJournal::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

}  // namespace fedcl::server
