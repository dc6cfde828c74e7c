#include "client/backoff.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedcl::client {

absl::Status BackoffOptions::Validate() const {
  auto bad = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("backoff: ", message));
  };
  if (initial <= absl::ZeroDuration()) return bad("initial must be > 0");
  if (max < initial) return bad("max must be >= initial");
  if (!(multiplier >= 1.0) || !std::isfinite(multiplier)) return bad("multiplier must be >= 1");
  if (!(jitter >= 0.0 && jitter < 1.0)) return bad("jitter must be in [0, 1)");
  if (max_consecutive_failures < 0) return bad("max_consecutive_failures must be >= 0");
  return absl::OkStatus();
}

Backoff::Backoff(const BackoffOptions& options, base::Rng rng) : options_(options), rng_(rng) {}

absl::Duration Backoff::Next() {
  const double max_seconds = absl::ToDoubleSeconds(options_.max);
  // Once past the cap the exponent no longer matters; bounding it keeps pow finite.
  const double growth = std::pow(options_.multiplier, std::min(attempt_, 64));
  double seconds = std::min(max_seconds, absl::ToDoubleSeconds(options_.initial) * growth);
  seconds *= rng_.Uniform(1.0 - options_.jitter, 1.0 + options_.jitter);
  ++attempt_;
  return absl::Seconds(std::min(seconds, max_seconds));
}

}  // namespace fedcl::client
