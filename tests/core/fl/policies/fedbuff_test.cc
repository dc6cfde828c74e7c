// The fedbuff round policy inside the Coordinator: algorithms-next.md §1.10's properties
// (reduction to synchronous FedAvg, K = 1 as sequential steps, a scripted staleness trace,
// FedAU intervals counted in flushes), exactly-once replays of late updates, and a restart inside
// an open buffer. Deltas are random, so a weight applied to the wrong update shows.
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/base/random.h"
#include "core/fl/coordinator.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

constexpr int kValues = 9;

StoredModule MakeModule(uint64_t seed) {
  StoredModule module;
  module.spec = {"m", ModuleRole::kHead, {}};
  module.values.Add("w", {2, 3}, true);
  module.values.Add("b", {3}, true);
  base::Rng rng(seed);
  for (int i = 0; i < kValues; ++i) {
    module.values.flat_values()[i] = static_cast<float>(rng.Normal(0.0, 1.0));
  }
  return module;
}

// A random delta of client `client` trained for `round` from module version `base_version`.
struct RandomUpdate {
  std::vector<float> values = std::vector<float>(kValues);
  UpdateSubmission submission;
  RandomUpdate(ClientId client, int64_t round, int64_t base_version, uint64_t seed) {
    base::Rng rng = base::Rng::ForStream(seed, {client, static_cast<uint64_t>(round)});
    for (float& v : values) v = static_cast<float>(rng.Normal(0.0, 0.5));
    submission.client = client;
    submission.round = round;
    submission.num_samples = 10 + static_cast<int64_t>(client);
    submission.local_steps = 5;
    submission.loss = 1.0;
    submission.modules.push_back(
        {"m", base_version, {{"w", {2, 3}}, {"b", {3}}}, absl::MakeSpan(values)});
  }
};

std::vector<float> Values(const Coordinator& c) {
  const auto modules = c.Modules();
  const auto& v = modules[0].values->flat_values();
  return std::vector<float>(v.data(), v.data() + v.size());
}

CoordinatorOptions FedBuff(const std::string& policy_options, const std::string& rule,
                           double gamma = 1.0) {
  CoordinatorOptions options;
  options.aggregator.name = rule;
  options.aggregator.global_learning_rate = gamma;
  options.round = {.name = "fedbuff", .round_duration = absl::Seconds(30)};
  options.round.options = policy_options;
  return options;
}

class FedBuffTest : public ::testing::Test {
 protected:
  std::unique_ptr<Coordinator> Make(const CoordinatorOptions& options, int clients,
                                    StateStore* store = nullptr) {
    std::vector<StoredModule> modules;
    modules.push_back(MakeModule(7));
    auto c = Coordinator::Create(options, clock_, store, std::move(modules));
    EXPECT_TRUE(c.ok()) << c.status();
    for (int n = 0; n < clients; ++n) EXPECT_TRUE((*c)->Enroll(n).ok());
    return *std::move(c);
  }
  int64_t Version(const Coordinator& c) { return c.Modules()[0].version; }
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
};

TEST(FedBuffPolicyTest, StalenessWeightsMatchTheirDefinitions) {
  auto weight = [](const std::string& options, int64_t staleness) {
    auto policy = CreateRoundPolicy({.name = "fedbuff", .options = options});
    EXPECT_TRUE(policy.ok()) << policy.status();
    return (*policy)->StalenessWeight(staleness);
  };
  // §1.10 test 5: (1 + τ)^(−1/2) at 0, 1, 4.
  EXPECT_DOUBLE_EQ(weight("", 0), 1.0);
  EXPECT_NEAR(weight("", 1), 0.70710678118654752, 1e-15);
  EXPECT_NEAR(weight("", 4), 0.44721359549995794, 1e-15);
  EXPECT_DOUBLE_EQ(weight("exponent: 1", 3), 0.25);
  EXPECT_DOUBLE_EQ(weight("staleness: constant", 9), 1.0);
  // FedAsync's hinge, a = 10, b = 4: flat to 4, then 1/(10(τ − 4) + 1).
  EXPECT_DOUBLE_EQ(weight("staleness: hinge", 4), 1.0);
  EXPECT_DOUBLE_EQ(weight("staleness: hinge", 5), 1.0 / 11.0);
  EXPECT_DOUBLE_EQ(weight("staleness: hinge hinge_a: 2 hinge_b: 1", 3), 1.0 / 5.0);
}

TEST(FedBuffPolicyTest, AdmitTakesLateUpdatesUpToMaxStaleness) {
  auto policy = *CreateRoundPolicy({.name = "fedbuff", .options = "max_staleness: 3"});
  EXPECT_EQ(policy->max_staleness(), 3);
  EXPECT_TRUE(policy->Admit(10, 10).ok());
  EXPECT_TRUE(policy->Admit(7, 10).ok());
  const absl::Status stale = policy->Admit(6, 10);
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_NE(stale.message().find("max_staleness 3"), std::string::npos) << stale;
  EXPECT_EQ(policy->Admit(11, 10).code(), absl::StatusCode::kOutOfRange);
}

TEST(FedBuffPolicyTest, BadOptionsAreRefusedNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"buffer_size: 0", "buffer_size"},  {"max_staleness: -1", "max_staleness"},
      {"staleness: linear", "staleness"}, {"staleness: constant exponent: 0.5", "exponent"},
      {"exponent: 2", "exponent"},        {"staleness: hinge hinge_a: 0", "hinge_a"},
      {"hinge_b: 2", "hinge_b"},          {"buffer: 3", "buffer"},
  };
  for (const auto& [options, field] : cases) {
    auto policy = CreateRoundPolicy({.name = "fedbuff", .options = options});
    ASSERT_FALSE(policy.ok()) << options;
    EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument) << options;
    EXPECT_NE(policy.status().message().find(field), std::string::npos) << policy.status();
  }
  auto quota = CreateRoundPolicy({.name = "fedbuff", .max_participants = 5});
  EXPECT_EQ(quota.status().code(), absl::StatusCode::kInvalidArgument);
}

// §1.10 test 1: K = N, every client trains from the same version, s ≡ 1: each flush is the
// synchronous round, bit for bit (the fold is exact, so the order cannot matter either).
TEST_F(FedBuffTest, WithKEqualToNAndFreshUpdatesItIsSynchronousFedAvg) {
  constexpr int kClients = 5;
  CoordinatorOptions sync;
  sync.aggregator.name = "average_participating";
  sync.aggregator.global_learning_rate = 1.5;
  auto synchronous = Make(sync, kClients);
  auto buffered =
      Make(FedBuff("buffer_size: 5 staleness: constant", "average_participating", 1.5), kClients);
  for (int round = 0; round < 4; ++round) {
    for (int n = 0; n < kClients; ++n) {
      RandomUpdate a(n, round, Version(*synchronous), 11);
      RandomUpdate b(kClients - 1 - n, round, Version(*buffered), 11);  // other arrival order
      ASSERT_TRUE(synchronous->Submit(a.submission).ok());
      ASSERT_TRUE(buffered->Submit(b.submission).ok());
    }
    ASSERT_TRUE(synchronous->CloseRound().ok());
    ASSERT_EQ(buffered->current_round(), round + 1) << "the fifth update flushes the buffer";
    ASSERT_EQ(Values(*buffered), Values(*synchronous)) << "round " << round;
  }
}

// §1.10 test 2: K = 1, s ≡ 1, average_participating with γ = 1: every update is applied as it
// arrives, whatever version it was trained from.
TEST_F(FedBuffTest, WithKOneEveryUpdateStepsTheModelAsItArrives) {
  auto c = Make(
      FedBuff("buffer_size: 1 staleness: constant max_staleness: 5", "average_participating"), 4);
  const std::vector<float> x0 = Values(*c);
  std::vector<double> expected(x0.begin(), x0.end());
  // Clients 0..3 all train from version 0 and arrive one after another: 0, 1, 2, 3 late.
  for (int n = 0; n < 4; ++n) {
    RandomUpdate u(n, 0, 0, 23);
    auto result = c->Submit(u.submission);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(c->current_round(), n + 1);
    for (int i = 0; i < kValues; ++i) expected[i] += u.values[i];
  }
  const std::vector<float> values = Values(*c);
  for (int i = 0; i < kValues; ++i) EXPECT_NEAR(values[i], expected[i], 1e-5) << i;
}

// §1.10 test 3: a scripted trace of versions, with staleness weights and the drop at τ_max.
TEST_F(FedBuffTest, LateUpdatesAreDiscountedAndTooLateOnesRefusedChangingNothing) {
  auto c = Make(FedBuff("buffer_size: 2 max_staleness: 1", "average_participating"), 4);
  const std::vector<float> x0 = Values(*c);
  // Client 0 takes version 0 and is slow; clients 1 and 2 fill buffer 0.
  RandomUpdate slow(0, 0, 0, 31), late(3, 0, 0, 31);
  const std::vector<float> slow_values = slow.values;  // Submit scales the late one in place
  RandomUpdate a(1, 0, 0, 31), b(2, 0, 0, 31);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  ASSERT_TRUE(c->Submit(b.submission).ok());
  ASSERT_EQ(c->current_round(), 1);
  const std::vector<float> x1 = Values(*c);
  for (int i = 0; i < kValues; ++i) {
    EXPECT_NEAR(x1[i], x0[i] + (a.values[i] + b.values[i]) / 2.0, 1e-5);
  }
  // Client 0's update arrives one version late: weight 1/sqrt(2).
  auto result = c->Submit(slow.submission);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR(result->weight, 1.0 / std::sqrt(2.0), 1e-12);
  RandomUpdate fresh(1, 1, Version(*c), 31);
  ASSERT_TRUE(c->Submit(fresh.submission).ok());
  ASSERT_EQ(c->current_round(), 2);
  const std::vector<RoundReport> reports = c->TakeRoundReports();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].staleness_max, 0);
  EXPECT_DOUBLE_EQ(reports[1].staleness_mean, 0.5);  // one update 1 late, one fresh
  EXPECT_EQ(reports[1].staleness_max, 1);
  const std::vector<float> x2 = Values(*c);
  for (int i = 0; i < kValues; ++i) {
    EXPECT_NEAR(x2[i], x1[i] + (slow_values[i] / std::sqrt(2.0) + fresh.values[i]) / 2.0, 1e-5);
  }
  // Client 3 also trained from version 0: two versions late is beyond max_staleness 1.
  auto refused = c->Submit(late.submission);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(refused.status().message().find("max_staleness 1"), std::string::npos);
  EXPECT_EQ(c->Status().accepted, 0);
  EXPECT_EQ(Values(*c), x2);
  // A version that does not exist yet, and a module version from the future.
  RandomUpdate future(3, 3, Version(*c), 31);
  EXPECT_EQ(c->Submit(future.submission).status().code(), absl::StatusCode::kOutOfRange);
  RandomUpdate ahead(3, 2, Version(*c) + 1, 31);
  EXPECT_EQ(c->Submit(ahead.submission).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c->Status().accepted, 0);
}

// §1.7 and §1.10 test 4: FedAU's round is the flush. Round-robin arrivals with N = 4, K = 2:
// clients 0 and 1 fill even flushes, 2 and 3 odd ones, so every interval after the first is 2 =
// N/K. Clients 2 and 3, first seen at flush N/K − 1 = 1, have ω = 2 from their second
// participation on; clients 0 and 1 read the mean of {1, 2, 2, ...} (§1.9a).
TEST_F(FedBuffTest, FedAuCountsParticipationIntervalsInFlushes) {
  auto c = Make(FedBuff("buffer_size: 2 staleness: constant", "adaptive"), 4);
  std::vector<int> participations(4, 0);
  for (int flush = 0; flush < 8; ++flush) {
    for (int n : {2 * (flush % 2), 2 * (flush % 2) + 1}) {
      RandomUpdate u(n, flush, Version(*c), 41);
      auto result = c->Submit(u.submission);
      ASSERT_TRUE(result.ok()) << result.status();
      const int k = ++participations[n];
      double expected = 1.0;
      if (n >= 2 && k >= 2) expected = 2.0;
      if (n < 2 && k >= 2) expected = (1.0 + 2.0 * (k - 2)) / (k - 1);
      EXPECT_DOUBLE_EQ(result->weight, expected) << "client " << n << " participation " << k;
    }
    ASSERT_EQ(c->current_round(), flush + 1);
  }
}

// A device that lost the acknowledgement of a late update replays it: acknowledged again and
// counted once, in its buffer and after the buffer flushed; the sample counts show it.
TEST_F(FedBuffTest, AReplayedLateUpdateIsCountedOnceInAndAfterItsBuffer) {
  auto c = Make(FedBuff("buffer_size: 2 max_staleness: 2", "average_participating"), 3);
  RandomUpdate a(1, 0, 0, 53), b(2, 0, 0, 53);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  ASSERT_TRUE(c->Submit(b.submission).ok());  // flush: version 1
  RandomUpdate late(0, 0, 0, 53);             // trained from version 0, arrives in buffer 1
  auto first = c->Submit(late.submission);
  ASSERT_TRUE(first.ok());
  auto again = c->Submit(late.submission);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_DOUBLE_EQ(again->weight, first->weight);
  EXPECT_EQ(c->Status().accepted, 1);
  RandomUpdate other(1, 1, Version(*c), 53);
  ASSERT_TRUE(c->Submit(other.submission).ok());  // flush: version 2
  c->TakeRoundReports();
  const std::vector<float> x2 = Values(*c);
  for (int replay = 0; replay < 2; ++replay) {
    auto after = c->Submit(late.submission);
    ASSERT_TRUE(after.ok()) << after.status();
    EXPECT_TRUE(after->duplicate);
  }
  EXPECT_EQ(c->Status().accepted, 0);
  EXPECT_EQ(Values(*c), x2);
  for (const ClientStatus& client : c->Status().clients) {
    if (client.record.id == 0) EXPECT_EQ(client.record.participations, 1);
  }
}

// Durability: acknowledged updates, late ones among them, survive a crash inside an open
// buffer, and the restarted buffer closes bit-identical to an uninterrupted one.
TEST_F(FedBuffTest, ARestartInsideAnOpenBufferClosesItBitIdentical) {
  auto run = [&](bool crash) {
    MemoryStateStore store;
    base::ManualClock clock(absl::FromUnixSeconds(1000));
    const CoordinatorOptions options = FedBuff("buffer_size: 3 max_staleness: 3", "adaptive", 0.8);
    std::vector<StoredModule> modules;
    modules.push_back(MakeModule(7));
    auto c = *Coordinator::Create(options, clock, &store, std::move(modules));
    for (ClientId n = 0; n < 6; ++n) EXPECT_TRUE(c->Enroll(n).ok());
    // Clients 0..5 submit in turn. A device whose update went into buffer v takes its next
    // work from version v + 1 (GetWork has nothing for it while v is open) and arrives six
    // submissions, two flushes, later: one version late.
    std::vector<int64_t> base_round(6, 0);
    for (int step = 0; step < 12; ++step) {
      const ClientId n = step % 6;
      RandomUpdate u(n, base_round[n], base_round[n], 61 + step);
      const int64_t buffer = c->current_round();
      auto result = c->Submit(u.submission);
      EXPECT_TRUE(result.ok()) << result.status();
      EXPECT_FALSE(result->duplicate);
      base_round[n] = buffer + 1;
      if (crash && step == 7) {  // buffer 2 holds two acknowledged updates, late ones
        c.reset();
        auto state = store.Load();
        EXPECT_TRUE(state.ok());
        c = *Coordinator::Recover(options, clock, &store, *std::move(state));
        EXPECT_EQ(c->Status().accepted, 2);
      }
    }
    EXPECT_EQ(c->current_round(), 4);
    return Values(*c);
  };
  const std::vector<float> crashed = run(true), uninterrupted = run(false);
  ASSERT_EQ(crashed.size(), uninterrupted.size());
  EXPECT_EQ(std::memcmp(crashed.data(), uninterrupted.data(), crashed.size() * sizeof(float)), 0);
}

// A buffer that does not fill flushes at its deadline once it holds an update; an empty one
// waits for the next deadline.
TEST_F(FedBuffTest, APartialBufferFlushesAtItsDeadline) {
  auto c = Make(FedBuff("buffer_size: 10", "average_participating"), 3);
  clock_.Advance(absl::Seconds(31));
  ASSERT_TRUE(c->Tick().ok());
  EXPECT_EQ(c->current_round(), 0);  // empty: the deadline moved on
  RandomUpdate u(1, 0, 0, 71);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(c->Tick().ok());
  EXPECT_EQ(c->current_round(), 0);
  clock_.Advance(absl::Seconds(25));
  ASSERT_TRUE(c->Tick().ok());
  EXPECT_EQ(c->current_round(), 1);
}

// A store whose first journal write waits until the test opens its gate: that update stays in
// flight (admitted, not yet folded) for as long as the test needs.
class GatedJournalStore final : public StateStore {
 public:
  absl::Status PutClient(const ClientRecord&) override { return absl::OkStatus(); }
  absl::Status JournalUpdate(const JournalEntry&) override {
    if (writes_.fetch_add(1) == 0) {
      entered_.Notify();
      gate_.WaitForNotification();
    }
    return absl::OkStatus();
  }
  absl::Status RoundOpened(const RoundRecord&) override { return absl::OkStatus(); }
  absl::Status RoundClosed(const RoundClose&) override { return absl::OkStatus(); }
  absl::StatusOr<StoredState> Load() const override { return absl::NotFoundError("empty"); }

  absl::Notification entered_, gate_;

 private:
  std::atomic<int> writes_{0};
};

// Updates in flight count towards the buffer: with K = 2, one update held in its journal write
// and one accepted, a third is told to retry (it would have made the buffer close with three)
// and lands in the next buffer. The FedBuff process test once saw a buffer of K + 1 this way.
TEST_F(FedBuffTest, UpdatesStillFoldingCountTowardsTheBuffer) {
  GatedJournalStore store;
  auto c = Make(FedBuff("buffer_size: 2", "average_participating"), 3, &store);
  RandomUpdate held(0, 0, 0, 81), second(1, 0, 0, 82), third(2, 0, 0, 83);
  std::thread slow([&] { EXPECT_TRUE(c->Submit(held.submission).ok()); });
  store.entered_.WaitForNotification();  // client 0 is admitted and held in its journal write
  ASSERT_TRUE(c->Submit(second.submission).ok());
  EXPECT_EQ(c->current_round(), 0) << "one accepted, one in flight: the buffer is not full yet";
  // Before the fix the third was admitted and closed the buffer, waiting for client 0's fold:
  // bound that wait, and open the gate if it comes to it.
  absl::Notification third_done;
  absl::Status third_status;
  std::thread late([&] {
    third_status = c->Submit(third.submission).status();
    third_done.Notify();
  });
  const bool refused_at_once = third_done.WaitForNotificationWithTimeout(absl::Seconds(10));
  store.gate_.Notify();
  slow.join();
  late.join();
  EXPECT_TRUE(refused_at_once) << "the third update waited for the full buffer to close";
  EXPECT_TRUE(absl::IsUnavailable(third_status)) << third_status;
  EXPECT_EQ(c->current_round(), 1) << "clients 0 and 1 closed buffer 0";
  ASSERT_TRUE(c->Submit(third.submission).ok()) << "sent again, it lands in buffer 1";
  EXPECT_EQ(c->Status().accepted, 1);
}

}  // namespace
}  // namespace fedcl::fl
