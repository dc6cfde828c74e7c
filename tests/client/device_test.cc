// client::Device (fedcl-client) against an in-process coordinator on a virtual clock: every sleep
// advances the clock, so rounds pass in microseconds and each failure is injected exactly where
// wanted.
#include "client/device.h"

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "core/base/memory_filesystem.h"
#include "core/base/status_macros.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/device_state_store.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/client_state.pb.h"
#include "tests/client/client_test_util.h"

namespace fedcl::client {
namespace {

using testing::CoordinatorTransport;

class DeviceTest : public ::testing::Test {
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

  // A device over a fresh transport (pointed to by `*transport` while the device lives).
  std::unique_ptr<Device> MakeDevice(CoordinatorTransport** transport) {
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
    environment.port = std::move(owned);
    absl::StatusOr<std::unique_ptr<Device>> device =
        Device::Create(options_, std::move(environment));
    EXPECT_TRUE(device.ok()) << device.status();
    return device.ok() ? *std::move(device) : nullptr;
  }

  // The device state the device saved last.
  v1::DeviceState Saved() {
    proto::DeviceStateStore store(fs_, options_.state_dir);
    absl::StatusOr<proto::DeviceStateStore::Loaded> loaded =
        store.Load(options_.client_id, options_.method);
    EXPECT_TRUE(loaded.ok() && loaded->state.has_value()) << loaded.status();
    return loaded.ok() && loaded->state.has_value() ? *loaded->state : v1::DeviceState();
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
  DeviceOptions options_;
};

TEST_F(DeviceTest, TrainsAndSubmitsUntilMaxRounds) {
  options_.max_rounds = 3;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.participations, 3);
  EXPECT_EQ(stats.rounds_trained, 3);
  EXPECT_EQ(stats.updates_dropped, 0);
  EXPECT_EQ(stats.backbone_downloads, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(LogLinesContaining("samples, loss"), 3);

  ASSERT_TRUE(coordinator().CloseRound().ok());
  const fl::CoordinatorStatus status = coordinator().Status();
  EXPECT_EQ(Record(status, 7).participations, 3);
  ASSERT_EQ(status.modules.size(), 2u);  // the loop below checks each
  for (const fl::ModuleVersion& m : status.modules) EXPECT_EQ(m.version, 3) << m.name;

  const v1::DeviceState state = Saved();
  EXPECT_EQ(state.last_round(), 2);
  EXPECT_FALSE(state.has_in_flight());
  EXPECT_EQ(state.queue_size(), 0) << "acknowledged learning is the server's";
  EXPECT_EQ(state.submissions(), 3);
  ASSERT_EQ(state.modules_size(), 2);
  for (const v1::DeviceModule& m : state.modules()) {
    EXPECT_EQ(m.version(), 2) << m.server_name() << ": its last update was trained from 2";
  }
  EXPECT_TRUE(fs_.Exists("/state/7/device_state"));
  EXPECT_TRUE(fs_.Exists("/state/7/backbone.ckpt"));
}

TEST_F(DeviceTest, RestartContinuesWithTheSavedEnrolmentModulesAndBackbone) {
  options_.max_rounds = 2;
  CoordinatorTransport* first;
  auto device = MakeDevice(&first);
  ASSERT_TRUE(device->Run().ok());
  std::vector<fl::ModuleVersion> held;
  const v1::DeviceState saved = Saved();
  for (const v1::DeviceModule& m : saved.modules()) held.push_back({m.server_name(), m.version()});
  ASSERT_EQ(held.size(), 2u);
  device.reset();

  options_.max_rounds = 1;
  CoordinatorTransport* second;
  device = MakeDevice(&second);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
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

TEST_F(DeviceTest, PendingUpdateIsResubmittedAfterARestart) {
  options_.max_rounds = 1;
  options_.backoff.max_consecutive_failures = 2;
  CoordinatorTransport* first;
  auto device = MakeDevice(&first);
  first->submit_failures = {absl::UnavailableError("down"), absl::UnavailableError("down")};
  absl::Status status = device->Run();
  EXPECT_TRUE(absl::IsUnavailable(status)) << status;
  EXPECT_NE(status.message().find("2 times in a row"), std::string::npos) << status;
  ASSERT_TRUE(Saved().has_in_flight()) << "saved before it left";
  EXPECT_EQ(Saved().in_flight().round(), 0);
  device.reset();

  CoordinatorTransport* second;
  device = MakeDevice(&second);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.rounds_trained, 0) << "the saved update is sent, not retrained";
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(stats.duplicates, 0) << "the server had never received it";
  EXPECT_EQ(second->submitted_rounds, (std::vector<int64_t>{0}));
  EXPECT_FALSE(Saved().has_in_flight());
  EXPECT_EQ(LogLinesContaining("round 0: 16 samples"), 1) << "logged once, when answered";
}

TEST_F(DeviceTest, PendingUpdateOfAClosedRoundIsDroppedAndTheNextRoundTrained) {
  options_.max_rounds = 1;
  options_.backoff.max_consecutive_failures = 1;
  CoordinatorTransport* first;
  auto device = MakeDevice(&first);
  first->submit_failures = {absl::UnavailableError("down")};
  EXPECT_FALSE(device->Run().ok());
  ASSERT_TRUE(Saved().has_in_flight());
  device.reset();
  ASSERT_TRUE(coordinator().CloseRound().ok());  // round 0 closes while the device is down

  CoordinatorTransport* second;
  device = MakeDevice(&second);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.updates_dropped, 1);
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(second->submitted_rounds, (std::vector<int64_t>{1}));
  EXPECT_EQ(Saved().updates_dropped(), 1);
  EXPECT_EQ(Record(coordinator().Status(), 7).participations, 0) << "round 1 is still open";
}

TEST_F(DeviceTest, LostAcknowledgementIsAnsweredAsADuplicate) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  transport->lose_next_acknowledgement = true;
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(stats.duplicates, 1);
  EXPECT_EQ(stats.retries, 1);
  EXPECT_EQ(transport->submissions, 2);
  EXPECT_EQ(transport->submitted_rounds.size(), 1u) << "counted once";
}

TEST_F(DeviceTest, ClientUnknownToTheServerJoinsAgain) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  transport->get_work_failures = {absl::NotFoundError("unknown client 7: join first")};
  ASSERT_TRUE(device->Run().ok());
  EXPECT_EQ(device->stats().rejoins, 1);
  EXPECT_EQ(transport->joins, 2);
  EXPECT_EQ(device->stats().participations, 1);
}

TEST_F(DeviceTest, UpdateRefusedForStaleModulesIsRetrainedOnTheNewVersions) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
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
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.updates_dropped, 1);
  EXPECT_EQ(stats.rounds_trained, 2);
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{1}));
  EXPECT_EQ(stats.modules_downloaded, 4) << "both modules, twice";
}

TEST_F(DeviceTest, UnexplainedFailedPreconditionStopsTheLoop) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  transport->submit_failures = {absl::FailedPreconditionError("no probability for client 7")};
  absl::Status status = device->Run();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_EQ(device->stats().participations, 0);
  EXPECT_EQ(device->stats().rounds_trained, 1) << "it does not train again into the same refusal";
}

TEST_F(DeviceTest, AuthenticationFailureStopsWithoutRetrying) {
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  transport->join_failures = {absl::UnauthenticatedError("unknown token")};
  absl::Status status = device->Run();
  EXPECT_TRUE(absl::IsUnauthenticated(status)) << status;
  EXPECT_EQ(device->stats().retries, 0);
  EXPECT_TRUE(sleeps_.empty());
}

TEST_F(DeviceTest, InvalidUpdateIsDroppedAndStopsTheLoop) {
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  transport->submit_failures = {absl::InvalidArgumentError("update norm 9 exceeds the bound 1")};
  absl::Status status = device->Run();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_FALSE(Saved().has_in_flight()) << "never sent again after a restart";
  EXPECT_EQ(Saved().queue_size(), 0);
  EXPECT_EQ(Saved().updates_dropped(), 1);
}

TEST_F(DeviceTest, TransientFailuresAreRetriedWithGrowingDelays) {
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  transport->get_work_failures = {absl::UnavailableError("a"), absl::DeadlineExceededError("b"),
                                  absl::ResourceExhaustedError("c"), absl::UnavailableError("d")};
  ASSERT_TRUE(device->Run().ok());
  EXPECT_EQ(device->stats().retries, 4);
  ASSERT_GE(sleeps_.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(absl::ToDoubleMilliseconds(sleeps_[i]), 10.0 * (1 << i), 1e-6) << i;
  }
}

TEST_F(DeviceTest, ParticipationFollowsTheSeededDraw) {
  coordinator_options_.round.min_participants = 0;  // rounds close without this lone device
  options_.participation_probability = 0.5;
  options_.participation_seed = 9;
  options_.max_duration = absl::Seconds(30);
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  ASSERT_TRUE(device->Run().ok());
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
  EXPECT_EQ(device->stats().rounds_skipped, skipped);
  EXPECT_GT(skipped, 0);
  EXPECT_GT(device->stats().participations, 0);
}

TEST_F(DeviceTest, DeclinedRoundThatTheServerExtendsIsDrawnAgain) {
  // min_participants = 1 and this device is alone: a round it declines is extended, not closed.
  options_.participation_probability = 0.5;
  options_.participation_seed = 1;
  while (base::Rng::ForStream(options_.participation_seed, {7, 0}).Bernoulli(0.5)) {
    ++options_.participation_seed;  // a seed whose first draw for round 0 says no
  }
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  ASSERT_TRUE(device->Run().ok());
  EXPECT_GE(device->stats().rounds_skipped, 1);
  EXPECT_EQ(transport->submitted_rounds, (std::vector<int64_t>{0}));
  EXPECT_EQ(LogLinesContaining("round 0: not taking part"), 1);
  EXPECT_EQ(transport->module_downloads, 2) << "a declined round downloads nothing";
  ASSERT_GE(transport->held.size(), 2u);
  EXPECT_TRUE(transport->held[1].empty()) << "still nothing held after the declined draw";
}

TEST_F(DeviceTest, StopInterruptsTheDefaultSleep) {
  auto owned =
      std::make_unique<CoordinatorTransport>(coordinator(), backbone_, testing::TinyMlpConfig());
  DeviceEnvironment environment;
  environment.fs = &fs_;
  environment.clock = &clock_;  // never advanced: the device waits in real time until stopped
  environment.log = &log_;
  environment.port = std::move(owned);
  options_.max_poll = absl::Seconds(60);
  options_.min_poll = absl::Seconds(60);
  auto device = Device::Create(options_, std::move(environment));
  ASSERT_TRUE(device.ok()) << device.status();
  absl::Status status = absl::UnknownError("not run");
  std::thread runner([&] { status = (*device)->Run(); });
  for (int i = 0; i < 500 && (*device)->stats().participations == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time stopped = absl::Now();
  (*device)->Stop();
  runner.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ((*device)->stats().participations, 1);
  EXPECT_LT(absl::Now() - stopped, absl::Seconds(30)) << "the 60 s wait was interrupted";
}

TEST_F(DeviceTest, CorruptStateIsSetAsideAndTheDeviceStartsAfresh) {
  fs_.SetFile("/state/7/device_state", "not a state file at all, just some bytes on disk");
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  EXPECT_TRUE(device->stats().state_set_aside);
  EXPECT_FALSE(device->stats().resumed);
  EXPECT_EQ(LogLinesContaining("set it aside"), 1);
  EXPECT_TRUE(fs_.Exists("/state/7/device_state.corrupt"));
  ASSERT_TRUE(device->Run().ok());
  EXPECT_EQ(device->stats().participations, 1);
}

TEST_F(DeviceTest, LocalBackboneMustBeTheServers) {
  // Another device's cache is the server's backbone: no download.
  options_.max_rounds = 1;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  ASSERT_TRUE(device->Run().ok());
  fs_.SetFile("/shared/backbone.ckpt", *fs_.ReadFile("/state/7/backbone.ckpt"));
  options_.client_id = 8;
  options_.state_dir = "/state/8";
  options_.backbone_checkpoint = "/shared/backbone.ckpt";
  device = MakeDevice(&transport);
  ASSERT_TRUE(device->Run().ok());
  EXPECT_EQ(transport->backbone_downloads, 0);

  // A different backbone (other weights) is refused.
  std::unique_ptr<nn::Model> other = testing::TinyMlp(2);
  ASSERT_TRUE(proto::SaveCheckpoint(fs_, "/other.ckpt", *other, {}, {}).ok());
  options_.client_id = 9;
  options_.state_dir = "/state/9";
  options_.backbone_checkpoint = "/other.ckpt";
  device = MakeDevice(&transport);
  absl::Status status = device->Run();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_NE(status.message().find("not the server's backbone"), std::string::npos) << status;
}

TEST_F(DeviceTest, InvalidOptionsAreRefusedAtCreate) {
  DeviceOptions bad = options_;
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
  EXPECT_TRUE(absl::IsInvalidArgument(Device::Create(bad, std::move(environment)).status()));
}

// An older fedcl-client's client_state, made from a device state: its modules, and the learning in
// flight as the pending update.
v1::ClientState LegacyStateOf(const v1::DeviceState& state) {
  v1::ClientState old;
  old.set_format_version(1);
  old.set_client_id(state.client_id());
  if (state.has_enrolled_round()) old.set_enrolled_round(state.enrolled_round());
  old.set_backbone_digest(state.backbone_digest());
  for (const v1::DeviceModule& m : state.modules()) {
    v1::ModulePayload* held = old.add_modules();
    held->mutable_module()->set_name(m.server_name());
    held->mutable_module()->set_version(m.version());
    held->mutable_module()->set_role(m.role());
    *held->mutable_module()->mutable_pet() = m.pet();
    *held->mutable_parameters() = m.base();
  }
  if (state.has_in_flight() && state.queue_size() == 1) {
    const v1::QueuedDelta& queued = state.queue(0);
    v1::PendingUpdate* pending = old.mutable_pending();
    pending->set_round(state.in_flight().round());
    pending->set_num_samples(queued.samples());
    pending->set_local_steps(queued.batches());
    pending->set_loss(queued.loss_sum() / static_cast<double>(queued.batches()));
    for (const v1::InFlightSubmission::Base& base : state.in_flight().modules()) {
      for (const v1::DeviceModule& m : state.modules()) {
        if (m.server_name() != base.name()) continue;
        for (const v1::ParameterSet& delta : queued.deltas()) {
          if (delta.name() != m.base().name()) continue;
          v1::PendingModuleDelta* d = pending->add_modules();
          d->set_name(base.name());
          d->set_base_version(base.version());
          *d->mutable_delta() = delta;
        }
      }
    }
  }
  return old;
}

TEST_F(DeviceTest, AnUpgradedDeviceCountsTheOldPendingUpdateOnce) {
  // A device of the old format whose reply was lost: the server has the update of round 0, the
  // device's client_state still holds it as pending.
  options_.max_rounds = 1;
  options_.backoff.max_consecutive_failures = 1;
  CoordinatorTransport* first;
  auto device = MakeDevice(&first);
  first->lose_next_acknowledgement = true;
  EXPECT_TRUE(absl::IsUnavailable(device->Run()));
  device.reset();
  const v1::DeviceState saved = Saved();
  ASSERT_TRUE(saved.has_in_flight());
  const v1::ClientState legacy = LegacyStateOf(saved);
  ASSERT_EQ(legacy.pending().modules_size(), 2);
  ASSERT_TRUE(fs_.DeleteFile("/state/7/device_state").ok());
  ASSERT_TRUE(fs_.DeleteFile("/state/7/device_state.prev").ok());
  ASSERT_TRUE(
      proto::WriteEnvelope(fs_, "/state/7/client_state", proto::PayloadKind::kClientState, legacy)
          .ok());

  CoordinatorTransport* second;
  device = MakeDevice(&second);
  EXPECT_TRUE(device->stats().resumed);
  EXPECT_EQ(LogLinesContaining("converted from client_state"), 1);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.participations, 1);
  EXPECT_EQ(stats.duplicates, 1) << "the server had it: acknowledged again";
  EXPECT_EQ(stats.rounds_trained, 0);
  EXPECT_EQ(second->submissions, 1);
  EXPECT_TRUE(second->submitted_rounds.empty()) << "nothing new was accepted";
  ASSERT_TRUE(coordinator().CloseRound().ok());
  EXPECT_EQ(Record(coordinator().Status(), 7).participations, 1) << "counted once";
  EXPECT_FALSE(Saved().has_in_flight());
}

TEST_F(DeviceTest, AContinualDeviceSubmitsWhatItsMethodLearns) {
  // linear_head learns the head only; the server also lists an SSF module, which stays as it was.
  options_.method = "linear_head";
  options_.batch_size = 8;
  options_.batches_per_sync = 4;
  options_.max_rounds = 3;
  CoordinatorTransport* transport;
  auto device = MakeDevice(&transport);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_GE(stats.batches, 12);
  EXPECT_GT(stats.scored, 0);
  EXPECT_GE(stats.participations, 1);
  EXPECT_EQ(stats.duplicates, 0);
  ASSERT_TRUE(coordinator().CloseRound().ok());
  const fl::CoordinatorStatus status = coordinator().Status();
  EXPECT_EQ(Record(status, 7).participations, stats.participations);
  std::map<std::string, int64_t> versions;
  for (const fl::ModuleVersion& m : status.modules) versions[m.name] = m.version;
  ASSERT_TRUE(versions.contains("head") && versions.contains("ssf")) << versions.size();
  EXPECT_GT(versions["head"], 0);
  EXPECT_EQ(versions["ssf"], 0) << "never trained, never moved";
  EXPECT_EQ(Saved().method(), "linear_head");
}

TEST_F(DeviceTest, UnknownMethodsAndBadMethodOptionsAreRefusedAtCreate) {
  DeviceOptions bad = options_;
  bad.method = "no_such_method";
  absl::Status status = bad.Validate();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "no_such_method")) << status;
  bad = options_;
  bad.method = "lae";
  bad.method_options = "fraction_per_task: 2.5";
  status = bad.Validate();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "fraction_per_task")) << status;
}

}  // namespace
}  // namespace fedcl::client
