// The chaos test's device ledger: an append-only text file in which a device
// (tests/integration/chaos_device_main.cc) records what it learned, every update it sends and every
// answer it receives, so that the test can tell exactly which updates the server acknowledged and
// recompute the modules from them. The writer and the reader of the format live here.
//
// One event per line, fields separated by spaces, floats in C's exact hexadecimal form (%a):
//
//   start                                   the process started (restarts are counted from these)
//   learn <step> <round> <index> <value>    step <step> adds <value> to coordinate <index> of the
//                                           module; written before the step is applied
//   send <round> <samples> <n> <i>:<v> ...  an update about to be sent for <round>: its <n>
//                                           nonzero values (all others are exactly zero)
//   ack <round> <duplicate> <weight>        the server acknowledged the update of <round>
//   refused <round> <code>                  the server answered with a definitive error
//   error <round> <code>                    the answer was lost (a transient error)
//   done                                    the device stopped cleanly, nothing in flight
//
// Durability: each event is one write(2) to a file opened with O_APPEND, before (send, learn) or
// after (ack, refused, error) the thing it records, so a kill -9 can lose an event's effect but
// never leave an effect without its event. A kill mid-write can leave a last line without its
// newline: the reader ignores it.
#ifndef FEDCL_TESTS_INTEGRATION_CHAOS_LEDGER_H_
#define FEDCL_TESTS_INTEGRATION_CHAOS_LEDGER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedcl::testing {

struct LedgerStep {
  int64_t step = 0;
  int64_t round = 0;
  int64_t index = 0;
  float value = 0.0f;
};

struct LedgerSend {
  int64_t round = 0;
  int64_t samples = 0;
  std::map<int64_t, float> nonzero;  // coordinate -> value
};

struct LedgerAnswer {
  enum class Kind { kAck, kRefused, kError };
  Kind kind = Kind::kAck;
  int64_t round = 0;
  bool duplicate = false;
  double weight = 0.0;
  int code = 0;  // absl::StatusCode of kRefused and kError
};

// A device's ledger as read back.
struct LedgerContents {
  int64_t starts = 0;
  bool done = false;  // the last event is "done"
  std::vector<LedgerStep> steps;
  std::vector<LedgerSend> sends;
  std::vector<LedgerAnswer> answers;
};

// Appends events to a ledger file. Not thread-safe.
class LedgerWriter {
 public:
  // Opens (creating) `path` for appending. Internal with errno if it cannot.
  static absl::StatusOr<LedgerWriter> Open(const std::string& path);
  LedgerWriter(LedgerWriter&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  LedgerWriter& operator=(LedgerWriter&&) = delete;
  ~LedgerWriter();

  absl::Status Start() { return Append("start"); }
  absl::Status Learn(const LedgerStep& step);
  absl::Status Send(const LedgerSend& send);
  absl::Status Answer(const LedgerAnswer& answer);
  absl::Status Done() { return Append("done"); }

 private:
  explicit LedgerWriter(int fd) : fd_(fd) {}
  absl::Status Append(const std::string& line);
  int fd_;
};

// Reads the ledger at `path` (empty if it does not exist). DataLoss naming the line for a complete
// line that does not parse.
absl::StatusOr<LedgerContents> ReadLedger(const std::string& path);

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_INTEGRATION_CHAOS_LEDGER_H_
