// Real processes for integration tests: start a binary, read its output line by line with a
// deadline, signal it (SIGKILL included) and reap it. Every wait is bounded.
#ifndef FEDCL_TESTS_INTEGRATION_CHILD_PROCESS_H_
#define FEDCL_TESTS_INTEGRATION_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedcl::testing {

// Directory of the project's binaries (build/bin), set by CMake.
std::string BinaryPath(const std::string& name);

class ChildProcess {
 public:
  // Starts `argv[0]` (a path) with the given arguments; stdout is captured, stderr goes to
  // `stderr_path` (or is inherited if empty).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const std::string& stderr_path = "");
  // Kills (SIGKILL) and reaps the process if it is still running.
  ~ChildProcess();

  // The next stdout line containing `needle`, or DeadlineExceeded.
  absl::StatusOr<std::string> WaitForLine(const std::string& needle, absl::Duration timeout);
  // Everything read from stdout so far.
  const std::string& output() const { return output_; }
  void Signal(int signal);
  // Waits for exit; returns the exit status (or 128 + signal), DeadlineExceeded on timeout.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  ChildProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  bool ReadAvailable(absl::Duration timeout);
  pid_t pid_;
  int stdout_fd_;
  bool reaped_ = false;
  int exit_code_ = 0;
  std::string output_;
  size_t scanned_ = 0;  // lines before this offset were already returned
};

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_INTEGRATION_CHILD_PROCESS_H_
