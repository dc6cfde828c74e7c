// Where fedcl's libraries send human-readable messages.
//
// Library code never prints. It writes to a `LogSink&` it was given; hosts pass
// `LogSink::Stderr()`, the C SDK forwards to the device's log callback, tests pass a
// `CapturingLogSink` and assert on what was said.
//
// Thread-safe.
#ifndef FEDCL_CORE_BASE_LOG_H_
#define FEDCL_CORE_BASE_LOG_H_

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace fedcl::base {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

absl::string_view LogLevelName(LogLevel level);

class LogSink {
 public:
  virtual ~LogSink() = default;
  // Writes "I message" style lines to standard error; never null.
  static LogSink& Stderr();
  // Discards everything; never null.
  static LogSink& Null();
  virtual void Write(LogLevel level, absl::string_view message) = 0;
};

// Keeps every message, for tests.
class CapturingLogSink final : public LogSink {
 public:
  struct Entry {
    LogLevel level;
    std::string message;
  };
  void Write(LogLevel level, absl::string_view message) override;
  std::vector<Entry> entries() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_LOG_H_
