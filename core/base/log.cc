#include "core/base/log.h"

#include <cstdio>

namespace fedcl::base {
namespace {

class StderrLogSink final : public LogSink {
 public:
  void Write(LogLevel level, absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    std::fprintf(stderr, "%c %.*s\n", LogLevelName(level)[0], static_cast<int>(message.size()),
                 message.data());
  }

 private:
  absl::Mutex mu_;
};

class NullLogSink final : public LogSink {
 public:
  void Write(LogLevel, absl::string_view) override {}
};

}  // namespace

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

LogSink& LogSink::Stderr() {
  static StderrLogSink* const sink = new StderrLogSink();
  return *sink;
}

LogSink& LogSink::Null() {
  static NullLogSink* const sink = new NullLogSink();
  return *sink;
}

void CapturingLogSink::Write(LogLevel level, absl::string_view message) {
  absl::MutexLock lock(&mu_);
  entries_.push_back({level, std::string(message)});
}

std::vector<CapturingLogSink::Entry> CapturingLogSink::entries() const {
  absl::MutexLock lock(&mu_);
  return entries_;
}

}  // namespace fedcl::base
