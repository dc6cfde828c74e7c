#include "core/fl/round_policy.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

std::unique_ptr<RoundPolicy> Make(const RoundPolicyConfig& config) {
  absl::StatusOr<std::unique_ptr<RoundPolicy>> policy = CreateRoundPolicy(config);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return policy.ok() ? *std::move(policy) : nullptr;
}

TEST(RoundPolicyTest, EveryBuiltInPolicyIsRegistered) {
  EXPECT_THAT(RoundPolicies().Names(), ElementsAre("barrier", "deadline_quota", "fedbuff"));
  const absl::Status unknown = CreateRoundPolicy({.name = "fedasync"}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(unknown));
  EXPECT_THAT(unknown.message(), HasSubstr("registered: barrier, deadline_quota, fedbuff"));
}

TEST(RoundPolicyTest, DeadlineQuotaClosesAtTheDeadlineWithEnoughUpdatesAndExtendsOtherwise) {
  auto policy =
      Make({.round_duration = absl::Seconds(30), .min_participants = 2, .max_participants = 5});
  const absl::Time deadline = policy->Open(0, kT0);
  EXPECT_EQ(deadline, kT0 + absl::Seconds(30));
  RoundProgress p{.round = 0, .opened = kT0, .deadline = deadline, .accepted = 1};
  EXPECT_EQ(policy->OnTick(p, deadline - absl::Milliseconds(1)), RoundPolicy::TickAction::kNothing);
  EXPECT_EQ(policy->OnTick(p, deadline), RoundPolicy::TickAction::kExtend);
  EXPECT_EQ(policy->Extend(p, deadline + absl::Seconds(2)), deadline + absl::Seconds(32));
  p.accepted = 2;
  EXPECT_EQ(policy->OnTick(p, deadline), RoundPolicy::TickAction::kClose);
  EXPECT_FALSE(policy->CloseAfterAccept(p));
  p.accepted = 5;
  EXPECT_TRUE(policy->CloseAfterAccept(p));
  EXPECT_TRUE(absl::IsFailedPrecondition(policy->Report(p, 0, 1, 0).status()));
}

TEST(RoundPolicyTest, SynchronousPoliciesAdmitOnlyTheOpenRound) {
  auto policy = Make({});
  EXPECT_TRUE(policy->Admit(4, 4).ok());
  EXPECT_TRUE(absl::IsAborted(policy->Admit(3, 4)));
  EXPECT_TRUE(absl::IsOutOfRange(policy->Admit(5, 4)));
}

TEST(RoundPolicyTest, BarrierCountsEachReporterOncePerRoundAndForgetsAtTheNextRound) {
  auto policy = Make({.name = "barrier", .reporters = 3});
  RoundProgress p{.round = 7, .opened = kT0, .deadline = policy->Open(7, kT0)};
  EXPECT_EQ(policy->OnTick(p, kT0 + absl::Hours(100)), RoundPolicy::TickAction::kNothing);
  EXPECT_FALSE(*policy->Report(p, 2, 3, 7));
  EXPECT_FALSE(*policy->Report(p, 2, 3, 7));
  EXPECT_FALSE(*policy->Report(p, 0, 3, 7));
  EXPECT_EQ(policy->reported(), 2);
  EXPECT_FALSE(*policy->Report(p, 1, 3, 6));  // late report of a closed round
  EXPECT_TRUE(*policy->Report(p, 1, 3, 7));
  p.round = 8;
  policy->Open(8, kT0);
  EXPECT_EQ(policy->reported(), 0);
  EXPECT_TRUE(absl::IsOutOfRange(policy->Report(p, 0, 3, 9).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(policy->Report(p, 3, 3, 8).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(policy->Report(p, 0, 2, 8).status()));
  EXPECT_EQ(policy->reported(), 0);
}

TEST(RoundPolicyTest, ImpossibleConfigurationsAreRefusedNamingTheField) {
  struct Case {
    RoundPolicyConfig config;
    const char* field;
  };
  for (const Case& c : {
           Case{{.round_duration = absl::ZeroDuration()}, "round_duration"},
           Case{{.min_participants = -1}, "min_participants"},
           Case{{.min_participants = 3, .max_participants = 2}, "max_participants"},
           Case{{.name = "barrier", .reporters = 0}, "reporters"},
           Case{{.name = "barrier", .max_participants = 4, .reporters = 2}, "max_participants"},
           Case{{.options = "k: 1"}, "options"},
       }) {
    const absl::Status status = CreateRoundPolicy(c.config).status();
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
}

}  // namespace
}  // namespace fedcl::fl
