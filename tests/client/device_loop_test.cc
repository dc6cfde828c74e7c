// DeviceLoop against an in-process coordinator on a virtual clock: every sleep advances the
// clock, so rounds pass in microseconds and each failure is injected exactly where wanted.
#include "client/device_loop.h"

#include <algorithm>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "core/base/memory_filesystem.h"
#include "core/base/status_macros.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "tests/client/client_test_util.h"

namespace fedcl::client {
namespace {

using testing::CoordinatorTransport;

class DeviceLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::unique_ptr<nn::Model> model = testing::TinyMlp(1);
    backbone_ = testing::BackboneBytes(*model);
    initial_modules_ = testing::InitialModules(*model);
    auto [images, labels] = testing::WriteSyntheticIdx(fs_, "/data", 64, 1);
    options_.client_id = 7;
    options_.state_dir = "/state/7";
    options_.data.images_path = images;
    options_.data.labels_path = labels;
    options_.data.num_classes = 4;
    options_.backoff.initial = absl::Milliseconds(10);
    options_.backoff.max = absl::Milliseconds(100);
    options_.backoff.jitter = 0.0;
    options_.min_poll = absl::Milliseconds(10);
    options_.max_poll = absl::Seconds(1);
    options_.max_duration = absl::Minutes(10);  // virtual time; a bound, never reached
    coordinator_options_.round.round_duration = absl::Seconds(1);
    coordinator_options_.recipe.local_steps = 2;
    coordinator_options_.recipe.batch_size = 8;
  }

  fl::Coordinator& coordinator() {
    if (coordinator_ == nullptr) {
      auto created =
          fl::Coordinator::Create(coordinator_options_, clock_, nullptr, initial_modules_);
      FEDCL_CHECK_OK(created.status());
      coordinator_ = *std::move(created);
    }
    return *coordinator_;
  }

  // A loop over a fresh transport (pointed to by `*transport` while the loop lives).
  std::unique_ptr<DeviceLoop> MakeLoop(CoordinatorTransport** transport) {
    auto owned =
        std::make_unique<CoordinatorTransport>(coordinator(), backbone_, testing::TinyMlpConfig());
    *transport = owned.get();
    DeviceEnvironment environment;
    environment.fs = &fs_;
    environment.clock = &clock_;
    environment.log = &log_;
    environment.sleep = [this](absl::Duration d) {
      sleeps_.push_back(d);
      clock_.Advance(d);
    };
    environment.transport = std::move(owned);
    absl::StatusOr<std::unique_ptr<DeviceLoop>> loop =
        DeviceLoop::Create(options_, std::move(environment));
    EXPECT_TRUE(loop.ok()) << loop.status();
    return loop.ok() ? *std::move(loop) : nullptr;
  }

  int LogLinesContaining(absl::string_view text) const {
    int count = 0;
    for (const auto& entry : log_.entries()) count += absl::StrContains(entry.message, text);
    return count;
  }

  const fl::ClientRecord& Record(const fl::CoordinatorStatus& status, fl::ClientId id) {
    for (const fl::ClientStatus& c : status.clients) {
      if (c.record.id == id) return c.record;
    }
    ADD_FAILURE() << "no client " << id;
    static const fl::ClientRecord none;
    return none;
  }

  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  base::MemoryFileSystem fs_;
  base::CapturingLogSink log_;
  std::vector<absl::Duration> sleeps_;
  std::string backbone_;
  std::vector<fl::StoredModule> initial_modules_;
  fl::CoordinatorOptions coordinator_options_;
  std::unique_ptr<fl::Coordinator> coordinator_;
  DeviceLoopOptions options_;
};

TEST_F(DeviceLoopTest, TrainsAndSubmitsUntilMaxRounds) {
  options_.max_rounds = 3;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  ASSERT_TRUE(loop->Run().ok());
  const DeviceStats stats = loop->stats();
  EXPECT_EQ(stats.participations, 3);
  EXPECT_EQ(stats.rounds_trained, 3);
  EXPECT_EQ(stats.updates_dropped, 0);
  EXPECT_EQ(stats.backbone_downloads, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(LogLinesContaining("samples, loss"), 3);

  ASSERT_TRUE(coordinator().CloseRound().ok());
  const fl::CoordinatorStatus status = coordinator().Status();
  EXPECT_EQ(Record(status, 7).participations, 3);
  for (const fl::ModuleVersion& m : status.modules) EXPECT_EQ(m.version, 3) << m.name;

  const ClientState& state = loop->state();
  EXPECT_EQ(state.last_submitted_round, 2);
  EXPECT_FALSE(state.pending.has_value());
  EXPECT_EQ(state.participations, 3);
  ASSERT_EQ(state.modules.size(), 2u);
  EXPECT_TRUE(fs_.Exists("/state/7/client_state"));
  EXPECT_TRUE(fs_.Exists("/state/7/backbone.ckpt"));
}

TEST_F(DeviceLoopTest, RestartContinuesWithTheSavedEnrolmentModulesAndBackbone) {
  options_.max_rounds = 2;
  CoordinatorTransport* first;
  auto loop = MakeLoop(&first);
  ASSERT_TRUE(loop->Run().ok());
  std::vector<fl::ModuleVersion> held;
  for (const HeldModule& m : loop->state().modules) held.push_back({m.spec.name, m.version});
  ASSERT_EQ(held.size(), 2u);
  loop.reset();

  options_.max_rounds = 1;
  CoordinatorTransport* second;
  loop = MakeLoop(&second);
  ASSERT_TRUE(loop->Run().ok());
  const DeviceStats stats = loop->stats();
  EXPECT_TRUE(stats.resumed);
  EXPECT_EQ(stats.enrolled_round, 0);
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(stats.total_participations, 3);
  EXPECT_EQ(second->backbone_downloads, 0) << "the cached backbone is used";
  ASSERT_FALSE(second->held.empty());
  ASSERT_EQ(second->held[0].size(), held.size());
  for (size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(second->held[0][i].name, held[i].name);
    EXPECT_EQ(second->held[0][i].version, held[i].version) << "installed from the state";
  }
  EXPECT_EQ(Record(coordinator().Status(), 7).enrolled_round, 0);
}

TEST_F(DeviceLoopTest, PendingUpdateIsResubmittedAfterARestart) {
  options_.max_rounds = 1;
  options_.backoff.max_consecutive_failures = 2;
  CoordinatorTransport* first;
  auto loop = MakeLoop(&first);
  first->submit_failures = {absl::UnavailableError("down"), absl::UnavailableError("down")};
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_NE(status.message().find("2 times in a row"), std::string::npos) << status;
  ASSERT_TRUE(loop->state().pending.has_value());
  EXPECT_EQ(loop->state().pending->round, 0);
  loop.reset();

  CoordinatorTransport* second;
  loop = MakeLoop(&second);
  ASSERT_TRUE(loop->Run().ok());
  const DeviceStats stats = loop->stats();
  EXPECT_EQ(stats.resubmissions, 1);
  EXPECT_EQ(stats.rounds_trained, 0) << "the saved update is sent, not retrained";
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(second->submitted_rounds, (std::vector<int64_t>{0}));
  EXPECT_FALSE(loop->state().pending.has_value());
}

TEST_F(DeviceLoopTest, PendingUpdateOfAClosedRoundIsDroppedAndTheNextRoundTrained) {
  options_.max_rounds = 1;
  options_.backoff.max_consecutive_failures = 1;
  CoordinatorTransport* first;
  auto loop = MakeLoop(&first);
  first->submit_failures = {absl::UnavailableError("down")};
  EXPECT_FALSE(loop->Run().ok());
  ASSERT_TRUE(loop->state().pending.has_value());
  loop.reset();
  ASSERT_TRUE(coordinator().CloseRound().ok());  // round 0 closes while the device is down

  CoordinatorTransport* second;
  loop = MakeLoop(&second);
  ASSERT_TRUE(loop->Run().ok());
  const DeviceStats stats = loop->stats();
  EXPECT_EQ(stats.resubmissions, 1);
  EXPECT_EQ(stats.updates_dropped, 1);
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(second->submitted_rounds, (std::vector<int64_t>{1}));
  EXPECT_EQ(loop->state().dropped_updates, 1);
}

TEST_F(DeviceLoopTest, LostAcknowledgementIsAnsweredAsADuplicate) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->lose_next_acknowledgement = true;
  ASSERT_TRUE(loop->Run().ok());
  const DeviceStats stats = loop->stats();
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(stats.duplicates, 1);
  EXPECT_EQ(stats.retries, 1);
  EXPECT_EQ(transport->submissions, 2);
  EXPECT_EQ(transport->submitted_rounds.size(), 1u) << "counted once";
}

TEST_F(DeviceLoopTest, ClientUnknownToTheServerJoinsAgain) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->get_work_failures = {absl::NotFoundError("unknown client 7: join first")};
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(loop->stats().rejoins, 1);
  EXPECT_EQ(transport->joins, 2);
  EXPECT_EQ(loop->stats().participations, 1);
}

TEST_F(DeviceLoopTest, UpdateRefusedForStaleModulesIsRetrainedOnTheNewVersions) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->submit_failures = {absl::FailedPreconditionError(
      "module 'head' is at version 1; the update was trained from version 0")};
  // Meanwhile another device's update closes the round: the modules move to new versions.
  transport->on_next_submit_failure = [this] {
    ASSERT_TRUE(coordinator().Enroll(99).ok());
    fl::LocalUpdate other;
    for (const fl::ModuleSnapshot& m : coordinator().Modules()) {
      fl::ModuleUpdate delta{m.spec.name, m.version, {}, {}};
      for (const nn::TensorInfo& t : m.values->tensors()) delta.layout.push_back({t.name, t.shape});
      delta.values.assign(m.values->num_values(), 0.01f);
      other.modules.push_back(std::move(delta));
    }
    other.num_samples = 8;
    ASSERT_TRUE(coordinator().Submit(fl::ToSubmission(other, 99, 0)).ok());
    ASSERT_TRUE(coordinator().CloseRound().ok());
  };
  ASSERT_TRUE(loop->Run().ok());
  const DeviceStats stats = loop->stats();
  EXPECT_EQ(stats.updates_dropped, 1);
  EXPECT_EQ(stats.rounds_trained, 2);
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{1}));
  EXPECT_EQ(stats.module_downloads, 4) << "both modules, twice";
}

TEST_F(DeviceLoopTest, UnexplainedFailedPreconditionStopsTheLoop) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->submit_failures = {absl::FailedPreconditionError("no probability for client 7")};
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_EQ(loop->stats().participations, 0);
  EXPECT_EQ(loop->stats().rounds_trained, 1) << "it does not train again into the same refusal";
}

TEST_F(DeviceLoopTest, AuthenticationFailureStopsWithoutRetrying) {
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->join_failures = {absl::UnauthenticatedError("unknown token")};
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsUnauthenticated(status)) << status;
  EXPECT_EQ(loop->stats().retries, 0);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(DeviceLoopTest, InvalidUpdateIsDroppedAndStopsTheLoop) {
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->submit_failures = {absl::InvalidArgumentError("update norm 9 exceeds the bound 1")};
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_FALSE(loop->state().pending.has_value()) << "never sent again after a restart";
  EXPECT_EQ(loop->state().dropped_updates, 1);
}

TEST_F(DeviceLoopTest, TransientFailuresAreRetriedWithGrowingDelays) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  transport->get_work_failures = {absl::UnavailableError("a"), absl::DeadlineExceededError("b"),
                                  absl::ResourceExhaustedError("c"), absl::UnavailableError("d")};
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(loop->stats().retries, 4);
  ASSERT_GE(sleeps_.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(absl::ToDoubleMilliseconds(sleeps_[i]), 10.0 * (1 << i), 1e-6) << i;
  }
}

TEST_F(DeviceLoopTest, ParticipationFollowsTheSeededDraw) {
  coordinator_options_.round.min_participants = 0;  // rounds close without this lone device
  options_.participation_probability = 0.5;
  options_.participation_seed = 9;
  options_.max_duration = absl::Seconds(30);
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  ASSERT_TRUE(loop->Run().ok());
  const std::set<int64_t> offered(transport->train_rounds.begin(), transport->train_rounds.end());
  const std::set<int64_t> taken(transport->submitted_rounds.begin(),
                                transport->submitted_rounds.end());
  ASSERT_GE(offered.size(), 20u);
  int skipped = 0;
  for (int64_t round : offered) {
    const bool draw = base::Rng::ForStream(9, {7, static_cast<uint64_t>(round)}).Bernoulli(0.5);
    EXPECT_EQ(taken.contains(round), draw) << "round " << round;
    skipped += !draw;
  }
  EXPECT_EQ(loop->stats().rounds_skipped, skipped);
  EXPECT_GT(skipped, 0);
  EXPECT_GT(loop->stats().participations, 0);
}

TEST_F(DeviceLoopTest, DeclinedRoundThatTheServerExtendsIsDrawnAgain) {
  // min_participants = 1 and this device is alone: a round it declines is extended, not closed.
  options_.participation_probability = 0.5;
  options_.participation_seed = 1;
  while (base::Rng::ForStream(options_.participation_seed, {7, 0}).Bernoulli(0.5)) {
    ++options_.participation_seed;  // a seed whose first draw for round 0 says no
  }
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_GE(loop->stats().rounds_skipped, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{0}));
  EXPECT_EQ(LogLinesContaining("round 0: not taking part"), 1);
}

TEST_F(DeviceLoopTest, StopInterruptsTheDefaultSleep) {
  auto owned =
      std::make_unique<CoordinatorTransport>(coordinator(), backbone_, testing::TinyMlpConfig());
  DeviceEnvironment environment;
  environment.fs = &fs_;
  environment.clock = &clock_;  // never advanced: the loop waits in real time until stopped
  environment.log = &log_;
  environment.transport = std::move(owned);
  options_.max_poll = absl::Seconds(60);
  options_.min_poll = absl::Seconds(60);
  auto loop = DeviceLoop::Create(options_, std::move(environment));
  ASSERT_TRUE(loop.ok()) << loop.status();
  absl::Status status = absl::UnknownError("not run");
  std::thread runner([&] { status = (*loop)->Run(); });
  for (int i = 0; i < 500 && (*loop)->stats().participations == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time stopped = absl::Now();
  (*loop)->Stop();
  runner.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ((*loop)->stats().participations, 1);
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(30)) << "the 60 s wait was interrupted";
}

TEST_F(DeviceLoopTest, CorruptStateIsSetAsideAndTheDeviceStartsAfresh) {
  fs_.SetFile("/state/7/client_state", "not a state file at all, just some bytes on disk");
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  EXPECT_TRUE(loop->stats().state_set_aside);
  EXPECT_FALSE(loop->stats().resumed);
  EXPECT_EQ(LogLinesContaining("set it aside"), 1);
  EXPECT_TRUE(fs_.Exists("/state/7/client_state.corrupt"));
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(loop->stats().participations, 1);
}

TEST_F(DeviceLoopTest, LocalBackboneMustBeTheServers) {
  // Another device's cache is the server's backbone: no download.
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto loop = MakeLoop(&transport);
  ASSERT_TRUE(loop->Run().ok());
  fs_.SetFile("/shared/backbone.ckpt", *fs_.ReadFile("/state/7/backbone.ckpt"));
  options_.client_id = 8;
  options_.state_dir = "/state/8";
  options_.backbone_checkpoint = "/shared/backbone.ckpt";
  loop = MakeLoop(&transport);
  ASSERT_TRUE(loop->Run().ok());
  EXPECT_EQ(transport->backbone_downloads, 0);

  // A different backbone (other weights) is refused.
  std::unique_ptr<nn::Model> other = testing::TinyMlp(2);
  ASSERT_TRUE(proto::SaveCheckpoint(fs_, "/other.ckpt", *other, {}, {}).ok());
  options_.client_id = 9;
  options_.state_dir = "/state/9";
  options_.backbone_checkpoint = "/other.ckpt";
  loop = MakeLoop(&transport);
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_NE(status.message().find("not the server's backbone"), std::string::npos) << status;
}

TEST_F(DeviceLoopTest, InvalidOptionsAreRefusedAtCreate) {
  DeviceLoopOptions bad = options_;
  bad.state_dir.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(bad.Validate()));
  bad = options_;
  bad.participation_probability = 0.0;
  EXPECT_TRUE(absl::IsInvalidArgument(bad.Validate()));
  bad = options_;
  bad.max_poll = absl::Milliseconds(1);
  EXPECT_TRUE(absl::IsInvalidArgument(bad.Validate()));
  bad = options_;
  bad.server.target.clear();
  DeviceEnvironment environment;  // no transport: one is built from options.server
  environment.fs = &fs_;
  EXPECT_TRUE(absl::IsInvalidArgument(DeviceLoop::Create(bad, std::move(environment)).status()));
}

}  // namespace
}  // namespace fedcl::client
