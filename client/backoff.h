// Exponential backoff with jitter, for retrying calls the server asked us to retry.
//
//   client::Backoff backoff(options, base::Rng::ForStream(seed, {client}));
//   while (!(status = Call()).ok() && IsTransient(status)) sleep(backoff.Next());
//   backoff.Reset();                                    // after a success
//
// The n-th delay (n = 0, 1, ...) is min(max, initial · multiplier^n), then multiplied by a factor
// drawn uniformly from [1 − jitter, 1 + jitter] and capped at max again, so devices that lost the
// server together do not come back in lockstep. Deterministic for a given Rng. Not thread-safe.
#ifndef FEDCL_CLIENT_BACKOFF_H_
#define FEDCL_CLIENT_BACKOFF_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/base/random.h"

namespace fedcl::client {

struct BackoffOptions {
  // First delay (> 0).
  absl::Duration initial = absl::Milliseconds(200);
  // Longest delay (>= initial).
  absl::Duration max = absl::Seconds(30);
  // Growth per failure (>= 1).
  double multiplier = 2.0;
  // Relative jitter in [0, 1): each delay is scaled by a factor in [1 − jitter, 1 + jitter].
  double jitter = 0.2;
  // Give up after this many consecutive failures of one call (0 = never; the run's time limit
  // still applies).
  int max_consecutive_failures = 0;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

class Backoff {
 public:
  Backoff(const BackoffOptions& options, base::Rng rng);

  // The delay before the next attempt; each call grows the base delay.
  absl::Duration Next();
  // Back to `initial` (after a success).
  void Reset() { attempt_ = 0; }
  // Consecutive failures since the last Reset.
  int failures() const { return attempt_; }

 private:
  BackoffOptions options_;
  base::Rng rng_;
  int attempt_ = 0;
};

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_BACKOFF_H_
