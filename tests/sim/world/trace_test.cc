#include "sim/world/trace.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;

TEST(AvailabilityTraceTest, ParsesRoundsAndMergesOverlappingWindows) {
  absl::StatusOr<AvailabilityTrace> trace = AvailabilityTrace::Parse(
      "# a comment\n\nclient,from_round,until_round\n3,10,20\n3,15,30\n3,40,41\n0,0,5\n");
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->unit(), TraceUnit::kRounds);
  EXPECT_EQ(trace->num_clients(), 2u);  // clients 0 and 3 have windows
  EXPECT_EQ(trace->num_windows(), 3);   // [10,20) and [15,30) merge
  EXPECT_EQ(trace->WindowAt(3, 9), nullptr);
  ASSERT_NE(trace->WindowAt(3, 25), nullptr);
  EXPECT_EQ(trace->WindowAt(3, 25)->until, 30);
  EXPECT_EQ(trace->WindowAt(3, 30), nullptr);  // half-open
  EXPECT_NE(trace->WindowAt(3, 40), nullptr);
  EXPECT_EQ(trace->WindowAt(1, 0), nullptr);   // no windows
  EXPECT_EQ(trace->WindowAt(99, 0), nullptr);  // unknown client
}

TEST(AvailabilityTraceTest, SecondsHeaderSelectsSeconds) {
  absl::StatusOr<AvailabilityTrace> trace =
      AvailabilityTrace::Parse("client,from_s,until_s\n0,0.5,3600.25\n");
  ASSERT_TRUE(trace.ok());
  EXPECT_EQ(trace->unit(), TraceUnit::kSeconds);
  EXPECT_DOUBLE_EQ(trace->WindowAt(0, 100)->until, 3600.25);
}

TEST(AvailabilityTraceTest, BadInputNamesTheLine) {
  EXPECT_THAT(AvailabilityTrace::Parse("id,start,end\n").status().message(), HasSubstr("header"));
  EXPECT_THAT(AvailabilityTrace::Parse("").status().message(), HasSubstr("no header"));
  EXPECT_THAT(AvailabilityTrace::Parse("client,from_round,until_round\n1,5,2\n").status().message(),
              HasSubstr("line 2"));
  EXPECT_THAT(
      AvailabilityTrace::Parse("client,from_round,until_round\n1,-1,2\n").status().message(),
      HasSubstr("0 <= from < until"));
  EXPECT_THAT(AvailabilityTrace::Parse("client,from_round,until_round\nx,1,2\n").status().message(),
              HasSubstr("client id 'x'"));
  EXPECT_THAT(AvailabilityTrace::Parse("client,from_round,until_round\n1,1\n").status().message(),
              HasSubstr("expected 3 fields"));
  EXPECT_THAT(AvailabilityTrace::Parse("client,from_s,until_s\n1,1,inf\n").status().message(),
              HasSubstr("finite"));
}

TEST(DeviceProfilesTest, ParsesAndFallsBack) {
  absl::StatusOr<DeviceProfiles> profiles = DeviceProfiles::Parse(
      "client,ms_per_sample,bandwidth_kbps\n4,20,8000\n", DeviceProfile{1.0, 0.0});
  ASSERT_TRUE(profiles.ok()) << profiles.status();
  EXPECT_EQ(profiles->size(), 1);
  EXPECT_DOUBLE_EQ(profiles->For(4).ms_per_sample, 20);
  EXPECT_DOUBLE_EQ(profiles->For(5).ms_per_sample, 1.0);
  // 80 samples at 20 ms, then 1 MB down and 1 MB up at 8 Mbit/s: 1.6 s + 2 s.
  EXPECT_DOUBLE_EQ(profiles->For(4).RoundSeconds(80, 1000000, 1000000), 1.6 + 2.0);
  // Bandwidth 0 means transfers take no time.
  EXPECT_DOUBLE_EQ(profiles->For(5).RoundSeconds(80, 1000000, 1000000), 0.08);
}

TEST(DeviceProfilesTest, RejectsDuplicatesAndNegatives) {
  EXPECT_THAT(DeviceProfiles::Parse("client,ms_per_sample,bandwidth_kbps\n1,2,3\n1,2,3\n", {})
                  .status()
                  .message(),
              HasSubstr("second profile"));
  EXPECT_THAT(
      DeviceProfiles::Parse("client,ms_per_sample,bandwidth_kbps\n1,-2,3\n", {}).status().message(),
      HasSubstr(">= 0"));
}

}  // namespace
}  // namespace fedcl::sim
