#include "core/device/device_session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/base/clock.h"
#include "core/base/random.h"
#include "core/device/in_process_port.h"
#include "core/fl/coordinator.h"
#include "gtest/gtest.h"
#include "tests/support/faulty_port.h"

namespace fedcl::device {
namespace {

using Kind = SubmitOutcome::Kind;

// A module of two tensors with random values (no zeros, no ones).
nn::ParameterSet RandomSet(const std::string& name, uint64_t seed) {
  nn::ParameterSet set(name);
  set.Add("w", {3, 5}, true);
  set.Add("b", {5}, true);
  base::Rng rng(seed);
  for (int64_t i = 0; i < set.num_values(); ++i)
    set.flat_values()[i] = static_cast<float>(rng.Normal(0.3, 1.0));
  return set;
}

Eigen::VectorXf RandomDelta(int64_t size, uint64_t seed) {
  base::Rng rng(seed);
  Eigen::VectorXf d(size);
  for (int64_t i = 0; i < size; ++i) d[i] = static_cast<float>(rng.Normal(0.0, 0.1));
  return d;
}

bool SameBits(const Eigen::VectorXf& a, const Eigen::VectorXf& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

// A trainer over bare parameter sets; "learning" adds a delta the test chooses. It adopts
// modules the server lists when `adopts` is set.
class TestTrainer final : public cl::SessionTrainer {
 public:
  explicit TestTrainer(std::vector<nn::ParameterSet> sets, bool adopts = false)
      : sets_(sets.begin(), sets.end()), adopts_(adopts) {}
  std::vector<nn::ParameterSet*> SharedModules() override {
    std::vector<nn::ParameterSet*> out;
    for (nn::ParameterSet& s : sets_) out.push_back(&s);
    return out;
  }
  bool CanAdopt(const peft::ModuleSpec& spec) const override { return adopts_; }
  absl::StatusOr<nn::ParameterSet*> AdoptModule(const peft::ModuleSpec& spec,
                                                const nn::ParameterSet& values) override {
    if (!adopts_) return nullptr;
    nn::ParameterSet set = values.num_tensors() > 0 ? values : RandomSet(spec.name, 99);
    set.set_name(spec.name);
    sets_.push_back(std::move(set));
    return &sets_.back();
  }
  nn::ParameterSet& set(size_t i) { return sets_[i]; }
  void Learn(const Eigen::VectorXf& delta, size_t i = 0) { sets_[i].flat_values() += delta; }

 private:
  std::deque<nn::ParameterSet> sets_;
  const bool adopts_;
};

class DeviceSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fl::CoordinatorOptions options;
    options.round = {.name = "barrier", .reporters = 1};
    SetUpWith(options);
  }
  void SetUpWith(const fl::CoordinatorOptions& options) {
    std::vector<fl::StoredModule> modules(1);
    modules[0].spec = {"m", fl::ModuleRole::kHead, {}};
    modules[0].values = RandomSet("m", 2);
    initial_ = modules[0].values.flat_values();
    coordinator_ = *fl::Coordinator::Create(options, clock_, &store_, std::move(modules));
    ServerInfo info;
    info.protocol = std::string(kProtocol);
    port_ = std::make_unique<InProcessPort>(*coordinator_, info);
    faulty_ = std::make_unique<testing::FaultyPort>(*port_);
  }
  std::unique_ptr<DeviceSession> Make(TestTrainer& trainer, SessionOptions options = {}) {
    options.client_id = 7;
    return std::make_unique<DeviceSession>(options, trainer,
                                           SessionEnvironment{.port = faulty_.get(), .mu = &mu_});
  }
  void Learn(DeviceSession& session, TestTrainer& trainer, const Eigen::VectorXf& delta,
             bool commit = true) {
    std::lock_guard<std::mutex> lock(mu_);
    trainer.Learn(delta);
    session.AfterLearnLocked(16, 0.5);
    if (commit) ASSERT_TRUE(session.CommitLocked().ok());
  }
  void CloseRound() {
    absl::StatusOr<fl::Coordinator::ReportResult> closed =
        coordinator_->Report(0, 1, coordinator_->current_round());
    ASSERT_TRUE(closed.ok() && closed->closed && closed->close_status.ok());
  }
  Eigen::VectorXf ServerValues() { return coordinator_->Modules()[0].values->flat_values(); }

  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  fl::MemoryStateStore store_;
  std::unique_ptr<fl::Coordinator> coordinator_;
  std::unique_ptr<InProcessPort> port_;
  std::unique_ptr<testing::FaultyPort> faulty_;
  std::mutex mu_;
  Eigen::VectorXf initial_;  // the server's values of "m" at version 0
};

TEST_F(DeviceSessionTest, OfflineLearningIsRebasedOntoTheServersValuesAndSubmittedOnce) {
  TestTrainer trainer({RandomSet("m", 1)});
  auto session = Make(trainer);
  const Eigen::VectorXf d1 = RandomDelta(20, 11), d2 = RandomDelta(20, 12);
  Learn(*session, trainer, d1);                    // committed offline
  Learn(*session, trainer, d2, /*commit=*/false);  // not yet committed
  absl::StatusOr<RoundWork> work = session->Begin();
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_TRUE(work->train);
  EXPECT_EQ(work->modules_downloaded, 1);
  EXPECT_TRUE(trainer.set(0).flat_values().isApprox(initial_ + d1 + d2, 1e-6f));
  absl::StatusOr<SubmitOutcome> out = session->Submit(work->round);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->kind, Kind::kAccepted);
  EXPECT_EQ(out->batches, 2);
  EXPECT_EQ(out->samples, 32);
  ASSERT_EQ(faulty_->submitted_updates.size(), 1u);
  const std::vector<float>& sent = faulty_->submitted_updates[0].modules[0].values;
  EXPECT_TRUE(Eigen::Map<const Eigen::VectorXf>(sent.data(), 20).isApprox(d1 + d2, 1e-5f));
  CloseRound();
  // N = 1, ω = 1: the server moved by the whole delta, counted once.
  EXPECT_TRUE(ServerValues().isApprox(initial_ + d1 + d2, 1e-5f));
  // Nothing learned since: the next download lands on the server's values exactly.
  work = session->Begin();
  ASSERT_TRUE(work.ok());
  EXPECT_TRUE(SameBits(trainer.set(0).flat_values(), ServerValues()));
  out = session->Submit(work->round);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->kind, Kind::kNothingToSubmit);
}

TEST_F(DeviceSessionTest, ALostAcknowledgementIsResolvedBySendingTheSameUpdateForTheSameRound) {
  TestTrainer trainer({RandomSet("m", 1)});
  auto session = Make(trainer);
  const Eigen::VectorXf d1 = RandomDelta(20, 21), d2 = RandomDelta(20, 22);
  ASSERT_TRUE(session->Begin().ok());
  Learn(*session, trainer, d1);
  faulty_->lose_acknowledgements = 1;
  absl::StatusOr<SubmitOutcome> out = session->Submit(0);
  EXPECT_TRUE(absl::IsUnavailable(out.status()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_TRUE(session->InFlightLocked());
  }
  CloseRound();  // the server had the update: round 0 counts it
  Learn(*session, trainer, d2);
  absl::StatusOr<RoundWork> work = session->Begin();  // resolves the lost reply first
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_EQ(faulty_->submitted_rounds, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(faulty_->submitted_updates[1].modules[0].values,
            faulty_->submitted_updates[0].modules[0].values);
  EXPECT_TRUE(faulty_->duplicates[1]);
  ASSERT_EQ(work->round, 1);
  out = session->Submit(work->round);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->kind, Kind::kAccepted);
  const std::vector<float>& second = faulty_->submitted_updates[2].modules[0].values;
  EXPECT_TRUE(Eigen::Map<const Eigen::VectorXf>(second.data(), 20).isApprox(d2, 1e-5f));
  CloseRound();
  // Each learning counted once: x0 + d1 in round 0, + d2 in round 1.
  EXPECT_TRUE(ServerValues().isApprox(initial_ + d1 + d2, 1e-5f));
  EXPECT_EQ(coordinator_->Clients(7, 1)[0].record.participations, 2);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(session->CountersLocked().duplicates, 1);
  EXPECT_EQ(session->CountersLocked().submissions, 2);
}

TEST_F(DeviceSessionTest, ALostAcknowledgementIsResolvedAfterTheDeviceRestarts) {
  SessionState saved;
  const Eigen::VectorXf d1 = RandomDelta(20, 31);
  {
    TestTrainer trainer({RandomSet("m", 1)});
    auto session = Make(trainer);
    ASSERT_TRUE(session->Begin().ok());
    Learn(*session, trainer, d1);
    faulty_->lose_acknowledgements = 1;
    EXPECT_TRUE(absl::IsUnavailable(session->Submit(0).status()));
    std::lock_guard<std::mutex> lock(mu_);
    saved = session->ExportStateLocked();  // what the host persisted before the crash
  }
  ASSERT_TRUE(saved.in_flight.has_value());
  CloseRound();
  TestTrainer restarted({RandomSet("m", 1)});  // the process starts from scratch
  auto session = Make(restarted);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_TRUE(session->RestoreStateLocked(saved).ok());
  }
  EXPECT_TRUE(restarted.set(0).flat_values().isApprox(initial_ + d1, 1e-6f));
  absl::StatusOr<RoundWork> work = session->Begin();
  ASSERT_TRUE(work.ok()) << work.status();
  EXPECT_TRUE(faulty_->duplicates.back());
  absl::StatusOr<SubmitOutcome> out = session->Submit(work->round);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->kind, Kind::kNothingToSubmit);  // d1 is the server's: not sent again
  CloseRound();
  EXPECT_TRUE(ServerValues().isApprox(initial_ + d1, 1e-5f));
}

// Compressed uploads (issue 18): the round's work asks for top-k; error feedback keeps what a
// round's compression leaves out for the next, so after every round the server's move plus the
// device's residual is exactly what it learned (§6.5), a lost reply included: the restarted
// device resends the same compressed update and moves its residual once.
TEST_F(DeviceSessionTest, CompressedUploadsDeliverAllLearningThroughErrorFeedbackOnce) {
  fl::CoordinatorOptions options;
  options.round = {.name = "barrier", .reporters = 1};
  options.upload_compression = *fl::ParseCompressionSpec("topk:0.2:8");  // 4 of 20 values
  SetUpWith(options);
  auto residual_of = [&](DeviceSession& session) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::vector<float> r = session.ExportStateLocked().modules[0].residual;
    return r.empty() ? Eigen::VectorXf(Eigen::VectorXf::Zero(20))
                     : Eigen::VectorXf(Eigen::Map<const Eigen::VectorXf>(r.data(), 20));
  };
  Eigen::VectorXf learned = Eigen::VectorXf::Zero(20);
  auto check_nothing_lost = [&](DeviceSession& session) {
    const Eigen::VectorXf moved = ServerValues() - initial_;
    EXPECT_TRUE((moved + residual_of(session)).isApprox(learned, 1e-5f))
        << "moved " << moved.transpose() << "\nlearned " << learned.transpose();
  };
  SessionState saved;
  {
    TestTrainer trainer({RandomSet("m", 1)});
    auto session = Make(trainer);
    for (int round = 0; round < 3; ++round) {
      absl::StatusOr<RoundWork> work = session->Begin();
      ASSERT_TRUE(work.ok() && work->train) << work.status();
      const Eigen::VectorXf d = RandomDelta(20, 60 + round);
      Learn(*session, trainer, d);
      learned += d;
      absl::StatusOr<SubmitOutcome> out = session->Submit(work->round);
      ASSERT_TRUE(out.ok()) << out.status();
      // 4 one-byte index gaps and int8 values, one scale.
      EXPECT_EQ(out->bytes_uploaded, 4 + 4 + 4);
      const fl::ModuleUpdate& sent = faulty_->submitted_updates.back().modules[0];
      ASSERT_TRUE(sent.compressed.has_value());
      EXPECT_EQ(std::count(sent.values.begin(), sent.values.end(), 0.0f), 16);
      CloseRound();
      check_nothing_lost(*session);
    }
    EXPECT_GT(residual_of(*session).norm(), 0.0f);  // something was owed all along
    // Round 3: the reply is lost and the device dies.
    absl::StatusOr<RoundWork> work = session->Begin();
    ASSERT_TRUE(work.ok() && work->train);
    const Eigen::VectorXf d = RandomDelta(20, 70);
    Learn(*session, trainer, d);
    learned += d;
    faulty_->lose_acknowledgements = 1;
    EXPECT_TRUE(absl::IsUnavailable(session->Submit(work->round).status()));
    std::lock_guard<std::mutex> lock(mu_);
    saved = session->ExportStateLocked();
  }
  ASSERT_TRUE(saved.in_flight.has_value());
  ASSERT_EQ(saved.in_flight->compression.size(), 1u);
  CloseRound();  // the server had the update
  TestTrainer restarted({RandomSet("m", 1)});
  auto session = Make(restarted);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_TRUE(session->RestoreStateLocked(saved).ok());
  }
  absl::StatusOr<RoundWork> work = session->Begin();  // resends: a duplicate, the same bytes
  ASSERT_TRUE(work.ok()) << work.status();
  EXPECT_TRUE(faulty_->duplicates.back());
  const size_t n = faulty_->submitted_updates.size();
  EXPECT_EQ(faulty_->submitted_updates[n - 1].modules[0].values,
            faulty_->submitted_updates[n - 2].modules[0].values);
  EXPECT_EQ(faulty_->submitted_updates[n - 1].modules[0].compressed->indices,
            faulty_->submitted_updates[n - 2].modules[0].compressed->indices);
  check_nothing_lost(*session);
  // Later rounds keep paying the residual off.
  for (int round = 0; round < 2; ++round) {
    const Eigen::VectorXf d = RandomDelta(20, 80 + round);
    Learn(*session, restarted, d);
    learned += d;
    absl::StatusOr<SubmitOutcome> out = session->Submit(work->round);
    ASSERT_TRUE(out.ok() && out->kind == Kind::kAccepted) << out.status();
    CloseRound();
    check_nothing_lost(*session);
    work = session->Begin();
    ASSERT_TRUE(work.ok() && work->train);
  }
}

TEST_F(DeviceSessionTest, ARoundThatClosedWithoutTheUpdateKeepsOrDropsItsLearning) {
  for (SessionOptions::Unsent unsent :
       {SessionOptions::Unsent::kKeep, SessionOptions::Unsent::kDrop}) {
    SetUp();
    const bool keep = unsent == SessionOptions::Unsent::kKeep;
    SCOPED_TRACE(keep ? "keep" : "drop");
    TestTrainer trainer({RandomSet("m", 1)});
    auto session = Make(trainer, {.unsent = unsent});
    ASSERT_TRUE(session->Begin().ok());
    const Eigen::VectorXf d1 = RandomDelta(20, 41);
    Learn(*session, trainer, d1);
    CloseRound();  // round 0 closes before the update arrives
    absl::StatusOr<SubmitOutcome> out = session->Submit(0);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->kind, Kind::kRoundClosed);
    {
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_EQ(session->QueuedBatchesLocked(), keep ? 1 : 0);
      EXPECT_FALSE(session->InFlightLocked());
    }
    if (!keep) EXPECT_TRUE(SameBits(trainer.set(0).flat_values(), initial_));
    absl::StatusOr<RoundWork> work = session->Begin();
    ASSERT_TRUE(work.ok());
    out = session->Submit(work->round);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->kind, keep ? Kind::kAccepted : Kind::kNothingToSubmit);
    CloseRound();
    EXPECT_TRUE(ServerValues().isApprox(keep ? Eigen::VectorXf(initial_ + d1) : initial_, 1e-5f));
  }
}

// Buffered asynchronous rounds (fedbuff, K = 1: every accepted update is a model step): an
// update one version late is taken as it is; one beyond max_staleness is refused, and the device
// keeps its learning, re-bases it onto the current version and submits it again: counted once,
// nothing lost.
TEST_F(DeviceSessionTest, UnderBufferedRoundsATooLateUpdateIsRebasedAndCountedOnce) {
  fl::CoordinatorOptions options;
  options.aggregator.name = "average_participating";
  options.round = {.name = "fedbuff", .round_duration = absl::Hours(1)};
  options.round.options = "buffer_size: 1 max_staleness: 1 staleness: constant";
  SetUpWith(options);
  ASSERT_TRUE(coordinator_->Enroll(8).ok());
  // Client 8 moves the model on by one version with a random delta.
  std::vector<Eigen::VectorXf> others;
  auto other_steps = [&](int count) {
    for (int i = 0; i < count; ++i) {
      others.push_back(RandomDelta(20, 100 + others.size()));
      fl::UpdateSubmission update;
      update.client = 8;
      update.round = coordinator_->current_round();
      update.num_samples = 16;
      update.modules.push_back({"m",
                                coordinator_->Modules()[0].version,
                                {{"w", {3, 5}}, {"b", {5}}},
                                absl::MakeSpan(others.back().data(), 20)});
      ASSERT_TRUE(coordinator_->Submit(update).ok());
    }
  };
  TestTrainer trainer({RandomSet("m", 1)});
  auto session = Make(trainer, {.unsent = SessionOptions::Unsent::kKeep});
  absl::StatusOr<RoundWork> work = session->Begin();
  ASSERT_TRUE(work.ok() && work->train);
  const Eigen::VectorXf d1 = RandomDelta(20, 51);
  Learn(*session, trainer, d1);
  other_steps(1);  // version 1: the session's update will be one version late
  absl::StatusOr<SubmitOutcome> out = session->Submit(work->round);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->kind, Kind::kAccepted);
  Eigen::VectorXf expected = initial_ + others[0] + d1;
  EXPECT_TRUE(ServerValues().isApprox(expected, 1e-5f));

  work = session->Begin();
  ASSERT_TRUE(work.ok() && work->train);
  const int64_t base = work->round;
  const Eigen::VectorXf d2 = RandomDelta(20, 52);
  Learn(*session, trainer, d2);
  other_steps(2);  // two versions on: beyond max_staleness 1
  out = session->Submit(base);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->kind, Kind::kRoundClosed);
  expected += others[1] + others[2];
  EXPECT_TRUE(ServerValues().isApprox(expected, 1e-5f)) << "the refused update changed nothing";
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(session->QueuedBatchesLocked(), 1) << "the learning is kept";
  }
  work = session->Begin();  // re-bases d2 onto the current version
  ASSERT_TRUE(work.ok() && work->train);
  EXPECT_TRUE(trainer.set(0).flat_values().isApprox(expected + d2, 1e-5f));
  out = session->Submit(work->round);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->kind, Kind::kAccepted);
  EXPECT_TRUE(ServerValues().isApprox(expected + d2, 1e-5f));
  // Both updates counted once each.
  for (const fl::ClientStatus& client : coordinator_->Status().clients) {
    if (client.record.id == 7) EXPECT_EQ(client.record.participations, 2);
  }
}

TEST_F(DeviceSessionTest, TheQueueDropsItsOldestRecordFirstButNeverOneInFlight) {
  TestTrainer trainer({RandomSet("m", 1)});
  // Room for two records of 20 floats.
  auto session = Make(trainer, {.offline_queue_bytes = 2 * 20 * 4});
  const Eigen::VectorXf d1 = RandomDelta(20, 51), d2 = RandomDelta(20, 52),
                        d3 = RandomDelta(20, 53), d4 = RandomDelta(20, 54);
  Learn(*session, trainer, d1);
  Learn(*session, trainer, d2);
  Learn(*session, trainer, d3);  // d1 is dropped: folded into base, never sent
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(session->QueuedRecordsLocked(), 2);
    EXPECT_EQ(session->CountersLocked().records_dropped, 1);
  }
  absl::StatusOr<RoundWork> work = session->Begin();
  ASSERT_TRUE(work.ok());
  EXPECT_TRUE(trainer.set(0).flat_values().isApprox(initial_ + d2 + d3, 1e-6f));
  faulty_->lose_acknowledgements = 1;
  EXPECT_TRUE(absl::IsUnavailable(session->Submit(work->round).status()));
  const std::vector<float> sent = faulty_->submitted_updates[0].modules[0].values;
  EXPECT_TRUE(Eigen::Map<const Eigen::VectorXf>(sent.data(), 20).isApprox(d2 + d3, 1e-5f));
  Learn(*session, trainer, d4);  // over the bound, but the records in flight stay
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(session->QueuedRecordsLocked(), 3);
  }
  ASSERT_TRUE(session->Begin().ok());  // the resubmission is the same update
  EXPECT_EQ(faulty_->submitted_updates[1].modules[0].values, sent);
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(session->QueuedRecordsLocked(), 1);  // d4 only
}

TEST_F(DeviceSessionTest, AStateThatDoesNotFitIsRefusedAndChangesNothing) {
  TestTrainer trainer({RandomSet("m", 1)});
  auto session = Make(trainer);
  Learn(*session, trainer, RandomDelta(20, 61));
  std::lock_guard<std::mutex> lock(mu_);
  const SessionState good = session->ExportStateLocked();
  const Eigen::VectorXf before = trainer.set(0).flat_values();
  SessionState short_base = good;
  short_base.modules[0].base.pop_back();
  SessionState unknown = good;
  unknown.modules[0].name = "nope";
  SessionState nan = good;
  nan.queue[0].deltas[0][3] = std::nanf("");
  SessionState extra_delta = good;
  extra_delta.queue[0].deltas.push_back({1.0f});
  for (const SessionState& bad : {short_base, unknown, nan, extra_delta}) {
    EXPECT_TRUE(absl::IsInvalidArgument(session->RestoreStateLocked(bad)));
    EXPECT_TRUE(SameBits(trainer.set(0).flat_values(), before));
    EXPECT_EQ(session->QueuedRecordsLocked(), 1);
  }
  EXPECT_TRUE(session->RestoreStateLocked(good).ok());
  EXPECT_TRUE(SameBits(trainer.set(0).flat_values(), before));
}

TEST_F(DeviceSessionTest, ModulesTheTrainerAdoptsAreTakenOnAtDownloadAndAgainAtARestore) {
  TestTrainer trainer({}, /*adopts=*/true);
  auto session = Make(trainer, {.unsent = SessionOptions::Unsent::kDrop});
  absl::StatusOr<RoundWork> work = session->Begin();
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_EQ(trainer.SharedModules().size(), 1u);
  EXPECT_TRUE(SameBits(trainer.set(0).flat_values(), initial_));
  const Eigen::VectorXf d1 = RandomDelta(20, 71);
  Learn(*session, trainer, d1);
  SessionState saved;
  {
    std::lock_guard<std::mutex> lock(mu_);
    saved = session->ExportStateLocked();
  }
  TestTrainer restarted({}, /*adopts=*/true);
  auto again = Make(restarted, {.unsent = SessionOptions::Unsent::kDrop});
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_TRUE(again->RestoreStateLocked(saved).ok());
  ASSERT_EQ(restarted.SharedModules().size(), 1u);
  EXPECT_TRUE(SameBits(restarted.set(0).flat_values(), trainer.set(0).flat_values()));
}

}  // namespace
}  // namespace fedcl::device
