// The load generators' round barrier (submit_load_benchmark.cc).
#ifndef FEDCL_TESTS_BENCH_ROUND_BARRIER_H_
#define FEDCL_TESTS_BENCH_ROUND_BARRIER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace fedcl::bench {

// A reusable barrier for K threads whose waits are bounded and can be abandoned. The last thread
// to arrive releases the others and decides, for all of them, whether the run stops there.
class RoundBarrier {
 public:
  struct Release {
    absl::Time at;
    bool stop = false;
  };
  RoundBarrier(int parties, std::function<bool()> stop_now)
      : parties_(parties), stop_now_(std::move(stop_now)) {}

  // The release, or nullopt once `deadline` passed or Abort() was called; a party that gives up
  // aborts the barrier, since the others could never be released.
  std::optional<Release> Wait(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    if (aborted_) return std::nullopt;
    int64_t generation = generation_;
    if (++waiting_ == parties_) {
      waiting_ = 0;
      ++generation_;
      last_ = Release{absl::Now(), stop_now_()};
      return last_;
    }
    auto released = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return aborted_ || generation_ != generation;
    };
    mu_.AwaitWithDeadline(absl::Condition(&released), deadline);
    if (generation_ != generation) return last_;
    aborted_ = true;
    return std::nullopt;
  }

  void Abort() {
    absl::MutexLock lock(&mu_);
    aborted_ = true;
  }

 private:
  const int parties_;
  const std::function<bool()> stop_now_;
  absl::Mutex mu_;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  Release last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::bench

#endif  // FEDCL_TESTS_BENCH_ROUND_BARRIER_H_
