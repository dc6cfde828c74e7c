#include "client/backoff.h"

#include <algorithm>

#include "gtest/gtest.h"

namespace fedcl::client {
namespace {

TEST(BackoffTest, DelaysGrowGeometricallyWithinTheJitterAndStopAtTheCap) {
  BackoffOptions options;
  options.initial = absl::Milliseconds(100);
  options.max = absl::Seconds(1);
  options.multiplier = 2.0;
  options.jitter = 0.25;
  Backoff backoff(options, base::Rng(7));
  double base = 0.1;
  for (int i = 0; i < 10; ++i) {
    const double delay = absl::ToDoubleSeconds(backoff.Next());
    const double expected = std::min(base, 1.0);
    EXPECT_GE(delay, expected * 0.75 - 1e-9) << "attempt " << i;
    EXPECT_LE(delay, std::min(expected * 1.25, 1.0) + 1e-9) << "attempt " << i;
    base *= 2.0;
  }
  EXPECT_EQ(backoff.failures(), 10);
}

TEST(BackoffTest, ResetStartsOverFromTheInitialDelay) {
  BackoffOptions options;
  options.initial = absl::Milliseconds(100);
  options.jitter = 0.0;
  Backoff backoff(options, base::Rng(1));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(backoff.Next()), 100.0, 1e-6);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(backoff.Next()), 200.0, 1e-6);
  backoff.Reset();
  EXPECT_EQ(backoff.failures(), 0);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(backoff.Next()), 100.0, 1e-6);
}

TEST(BackoffTest, SameRngGivesTheSameDelays) {
  BackoffOptions options;
  Backoff a(options, base::Rng::ForStream(3, {1})), b(options, base::Rng::ForStream(3, {1}));
  Backoff c(options, base::Rng::ForStream(3, {2}));
  bool differs = false;
  for (int i = 0; i < 5; ++i) {
    const absl::Duration da = a.Next();
    EXPECT_EQ(da, b.Next());
    differs = differs || da != c.Next();
  }
  EXPECT_TRUE(differs) << "another stream should jitter differently";
}

TEST(BackoffTest, InvalidOptionsAreRefused) {
  BackoffOptions options;
  options.initial = absl::ZeroDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(options.Validate()));
  options = {};
  options.max = absl::Milliseconds(10);
  EXPECT_TRUE(absl::IsInvalidArgument(options.Validate()));
  options = {};
  options.multiplier = 0.5;
  EXPECT_TRUE(absl::IsInvalidArgument(options.Validate()));
  options = {};
  options.jitter = 1.0;
  EXPECT_TRUE(absl::IsInvalidArgument(options.Validate()));
  options = {};
  EXPECT_TRUE(options.Validate().ok());
}

}  // namespace
}  // namespace fedcl::client
