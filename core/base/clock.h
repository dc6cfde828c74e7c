// Time as an injected dependency.
//
// Code that needs "now" (round deadlines, progress lines, timeouts) takes a `Clock&`. Hosts pass
// `Clock::Real()`; tests and the simulator pass a `ManualClock` and move time themselves, so a
// deadline test never sleeps and a simulated day takes milliseconds.
//
// Thread-safe.
#ifndef FEDCL_CORE_BASE_CLOCK_H_
#define FEDCL_CORE_BASE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace fedcl::base {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time from the system; never null, lives for the whole program.
  static Clock& Real();
  virtual absl::Time Now() const = 0;
};

// A clock that only moves when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}
  absl::Time Now() const override;
  void Advance(absl::Duration delta);
  void Set(absl::Time time);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_CLOCK_H_
