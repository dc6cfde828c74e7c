// Device conditions (ClientOptions::conditions): the app's report of charging, network and use
// gates learning and syncing; a refused call changes nothing, and the same call goes through
// once the conditions allow it.
#include <atomic>

#include "gtest/gtest.h"
#include "tests/sdk/client_fixture.h"

namespace fedcl::sdk_test {
namespace {

TEST_F(ClientTest, ConditionsGateLearningAndSyncingAndARefusalChangesNothing) {
  std::atomic<bool> charging{false}, unmetered{false}, idle{true};
  int asked = 0;
  options_.conditions = [&] {
    ++asked;
    return ClientOptions::Conditions{
        .charging = charging, .unmetered_network = unmetered, .idle = idle};
  };
  options_.learn_requires.charging = true;
  options_.learn_requires.idle = true;
  options_.sync_requires.unmetered_network = true;
  CoordinatorTransport* transport = nullptr;
  auto client = Make(/*with_server=*/true, &transport);
  ASSERT_NE(client, nullptr);

  // On a metered network the device does not sync: nothing is downloaded.
  absl::StatusOr<SyncResult> refused_sync = client->Sync();
  EXPECT_TRUE(absl::IsFailedPrecondition(refused_sync.status())) << refused_sync.status();
  EXPECT_NE(refused_sync.status().message().find("on a metered network"), absl::string_view::npos)
      << refused_sync.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(client->StartSync()));
  EXPECT_EQ(transport->backbone_downloads, 0);
  unmetered = true;
  ASSERT_TRUE(client->Sync().ok());
  EXPECT_EQ(transport->backbone_downloads, 1);

  // Not charging: Learn and Adapt are refused and the model and its queue stay as they were.
  std::vector<float> x;
  std::vector<int32_t> y;
  MakeBatch(7, 16, &x, &y);
  const std::vector<Prediction> before = PredictAll(*client, x);
  const ClientStats stats_before = client->Stats();
  absl::StatusOr<LearnResult> refused = client->Learn(x, y);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("not eligible to learn: the device is not charging"),
            absl::string_view::npos)
      << refused.status();
  EXPECT_TRUE(absl::IsFailedPrecondition(client->Adapt(x).status()));
  const std::vector<Prediction> after = PredictAll(*client, x);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].label, before[i].label);
    EXPECT_EQ(after[i].confidence, before[i].confidence) << i;
  }
  EXPECT_EQ(client->Stats().learn_batches, stats_before.learn_batches);
  EXPECT_EQ(client->Stats().queue_records, stats_before.queue_records);

  // Charging but in use: still refused, naming what is missing; then idle, and it learns.
  charging = true;
  idle = false;
  refused = client->Learn(x, y);
  EXPECT_NE(refused.status().message().find("in use"), absl::string_view::npos) << refused.status();
  idle = true;
  ASSERT_TRUE(client->Learn(x, y).ok());
  EXPECT_EQ(client->Stats().learn_batches, stats_before.learn_batches + 1);
  // Two syncs, one learn and one adapt refused... and one learn in use: five refusals.
  EXPECT_EQ(client->Stats().ineligible_calls, 5);
  EXPECT_GE(asked, 7);
}

}  // namespace
}  // namespace fedcl::sdk_test
