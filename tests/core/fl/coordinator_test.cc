#include "core/fl/coordinator.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <thread>

#include "core/base/random.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

// One module "m" with a 2×3 weight and a 3-vector bias: 9 values.
StoredModule MakeModule(float value = 0.0f) {
  StoredModule module;
  module.spec = {"m", ModuleRole::kHead, {}};
  module.values.Add("w", {2, 3}, true);
  module.values.Add("b", {3}, true);
  module.values.flat_values().setConstant(value);
  return module;
}

std::vector<TensorSpec> Layout() { return {{"w", {2, 3}}, {"b", {3}}}; }
// An update whose delta is `fill` everywhere; owns its values.
struct TestUpdate {
  std::vector<float> values = std::vector<float>(9, 0.0f);
  UpdateSubmission submission;
  TestUpdate(ClientId client, int64_t round, float fill, int64_t base_version = 0) {
    std::fill(values.begin(), values.end(), fill);
    submission.client = client;
    submission.round = round;
    submission.num_samples = 10;
    submission.local_steps = 5;
    submission.loss = 1.0;
    submission.modules.push_back({"m", base_version, Layout(), absl::MakeSpan(values)});
  }
};

class CoordinatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Coordinator> Make(CoordinatorOptions options = {}, float initial = 0.0f) {
    std::vector<StoredModule> modules;
    modules.push_back(MakeModule(initial));
    auto c = Coordinator::Create(options, clock_, &store_, std::move(modules));
    EXPECT_TRUE(c.ok()) << c.status();
    return *std::move(c);
  }
  // The module's values as a vector.
  static std::vector<float> Values(const Coordinator& c) {
    auto modules = c.Modules();
    const auto& v = modules[0].values->flat_values();
    return std::vector<float>(v.data(), v.data() + v.size());
  }
  void PassDeadline(Coordinator& c) {
    clock_.Advance(absl::Seconds(31));
    ASSERT_TRUE(c.Tick().ok());
  }
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  MemoryStateStore store_;
};

TEST_F(CoordinatorTest, RoundClosesAtDeadlineWithTheFedAuAggregate) {
  CoordinatorOptions options;
  options.aggregator.global_learning_rate = 2.0;
  auto c = Make(options, 1.0f);
  for (ClientId id : {1, 2, 3, 4}) ASSERT_TRUE(c->Enroll(id).ok());
  TestUpdate a(1, 0, 0.5f), b(2, 0, -0.25f);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  ASSERT_TRUE(c->Submit(b.submission).ok());
  EXPECT_EQ(c->Status().state, RoundState::kCollecting);
  PassDeadline(*c);
  // First participation: ω = 1. x ← x + γ·(1/N)·Σ ω Δ with N = 4 enrolled.
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 1.0f + 2.0f * (0.5f - 0.25f) / 4.0f);
  EXPECT_EQ(c->current_round(), 1);
  EXPECT_EQ(c->Modules()[0].version, 1);
  auto reports = c->TakeRoundReports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].participants, 2);
  EXPECT_EQ(reports[0].enrolled, 4);
  EXPECT_EQ(reports[0].samples, 20);
}

// algorithms.md §1.3's test vector, live: rounds 2, 4, 5, 9 give weights 1, 3, 2.5 and 2.
TEST_F(CoordinatorTest, FedAuWeightsFollowTheReferenceTestVector) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  ASSERT_TRUE(c->Enroll(2).ok());  // keeps rounds moving when client 1 is away
  const std::vector<std::pair<int, double>> expected = {{2, 1.0}, {4, 3.0}, {5, 2.5}, {9, 2.0}};
  size_t next = 0;
  for (int round = 0; round < 10; ++round) {
    TestUpdate other(2, round, 0.0f, c->Modules()[0].version);
    ASSERT_TRUE(c->Submit(other.submission).ok());
    if (next < expected.size() && expected[next].first == round) {
      TestUpdate mine(1, round, 0.0f, c->Modules()[0].version);
      auto result = c->Submit(mine.submission);
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_DOUBLE_EQ(result->weight, expected[next].second) << "round " << round;
      ++next;
    }
    PassDeadline(*c);
  }
  EXPECT_EQ(next, expected.size());
  for (const ClientStatus& client : c->Status().clients) {
    if (client.record.id != 1) continue;
    EXPECT_EQ(client.record.participations, 4);
    EXPECT_EQ(client.record.fedau.intervals, 4);  // 3, 2, 1, 4
    EXPECT_EQ(client.record.fedau.interval_sum, 10);
  }
}

TEST_F(CoordinatorTest, AClientEnrollingAtRoundRCountsFromR) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  for (int round = 0; round < 3; ++round) {
    TestUpdate u(1, round, 0.0f, c->Modules()[0].version);
    ASSERT_TRUE(c->Submit(u.submission).ok());
    PassDeadline(*c);
  }
  auto enrolled = c->Enroll(9);  // at round 3
  ASSERT_TRUE(enrolled.ok());
  EXPECT_EQ(*enrolled, 3);
  for (int round = 3; round < 6; ++round) {
    TestUpdate u(1, round, 0.0f, c->Modules()[0].version);
    ASSERT_TRUE(c->Submit(u.submission).ok());
    if (round == 5) {
      // First participation: weight 1, and the interval recorded is 3 (rounds 3, 4, 5), not 6.
      TestUpdate late(9, round, 0.0f, c->Modules()[0].version);
      auto result = c->Submit(late.submission);
      ASSERT_TRUE(result.ok());
      EXPECT_DOUBLE_EQ(result->weight, 1.0);
    }
    PassDeadline(*c);
  }
  for (const ClientStatus& client : c->Status().clients) {
    if (client.record.id == 9) {
      EXPECT_EQ(client.record.fedau.interval_sum, 3);
    }
  }
}

TEST_F(CoordinatorTest, DuplicateSubmissionIsAcknowledgedAgainAndCountedOnce) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 1.0f);
  auto first = c->Submit(u.submission);
  auto second = c->Submit(u.submission);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_FALSE(first->duplicate);
  EXPECT_TRUE(second->duplicate);
  EXPECT_EQ(c->Status().accepted, 1);
  EXPECT_EQ(store_.journal_writes(), 1);
  PassDeadline(*c);
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 1.0f);  // N = 1, ω = 1, counted once
}

TEST_F(CoordinatorTest, BadInputGetsASpecificErrorAndChangesNothing) {
  CoordinatorOptions options;
  options.max_update_norm = 10.0;
  auto c = Make(options);
  ASSERT_TRUE(c->Enroll(1).ok());
  ASSERT_TRUE(c->Enroll(2).ok());
  ASSERT_TRUE(c->Leave(2, /*permanent=*/true).ok());

  struct Case {
    const char* name;
    TestUpdate update;
    absl::StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({"unknown client", TestUpdate(77, 0, 0.1f), absl::StatusCode::kNotFound});
  cases.push_back(
      {"revoked client", TestUpdate(2, 0, 0.1f), absl::StatusCode::kFailedPrecondition});
  cases.push_back({"future round", TestUpdate(1, 3, 0.1f), absl::StatusCode::kOutOfRange});
  cases.push_back(
      {"stale version", TestUpdate(1, 0, 0.1f, 5), absl::StatusCode::kFailedPrecondition});
  cases.push_back({"norm above bound", TestUpdate(1, 0, 4.0f), absl::StatusCode::kInvalidArgument});
  {
    TestUpdate u(1, 0, 0.1f);
    u.values[4] = std::nanf("");
    cases.push_back({"NaN", u, absl::StatusCode::kInvalidArgument});
  }
  {
    TestUpdate u(1, 0, 0.1f);
    u.values[0] = INFINITY;
    cases.push_back({"Inf", u, absl::StatusCode::kInvalidArgument});
  }
  {
    TestUpdate u(1, 0, 0.1f);
    u.submission.modules[0].layout[0].shape = {3, 2};
    cases.push_back({"shape", u, absl::StatusCode::kInvalidArgument});
  }
  {
    TestUpdate u(1, 0, 0.1f);
    u.submission.modules[0].name = "nope";
    cases.push_back({"unknown module", u, absl::StatusCode::kInvalidArgument});
  }
  {
    TestUpdate u(1, 0, 0.1f);
    u.submission.modules[0].values = u.submission.modules[0].values.subspan(0, 8);
    cases.push_back({"short values", u, absl::StatusCode::kInvalidArgument});
  }
  for (Case& bad : cases) {
    // Re-point the span: the Case copy owns its own values.
    bad.update.submission.modules[0].values =
        absl::MakeSpan(bad.update.values)
            .subspan(0, bad.update.submission.modules[0].values.size());
    auto result = c->Submit(bad.update.submission);
    EXPECT_EQ(result.status().code(), bad.code) << bad.name << ": " << result.status();
  }
  EXPECT_EQ(c->Status().accepted, 0);
  EXPECT_EQ(store_.journal_writes(), 0);
  // A normal round still completes correctly.
  TestUpdate good(1, 0, 0.5f);
  ASSERT_TRUE(c->Submit(good.submission).ok());
  PassDeadline(*c);
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 0.5f);  // N = 1 (client 2 revoked)
}

// Finite values too large for the round's exact sum are refused before they are journaled: the
// fold of a journaled update could otherwise overflow (and stop the server). Updates that fit
// are counted, whatever came before.
TEST_F(CoordinatorTest, ValuesTooLargeForTheRoundsExactSumAreRefusedBeforeTheJournal) {
  auto c = Make();
  for (ClientId id : {1, 2, 3}) ASSERT_TRUE(c->Enroll(id).ok());
  TestUpdate huge(1, 0, 6e14f);  // finite, and far past the fixed-point capacity
  auto refused = c->Submit(huge.submission);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("exact sum"), std::string::npos) << refused.status();
  EXPECT_EQ(store_.journal_writes(), 0);
  // Two updates that fit alone but not together: the second is refused, the first counts.
  const float half = static_cast<float>(Coordinator::kRoundMagnitudeBudget * 0.6);
  TestUpdate a(2, 0, half), b(3, 0, half);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  EXPECT_EQ(c->Submit(b.submission).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Status().accepted, 1);
  PassDeadline(*c);
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, half / 3.0f);  // FedAU, N = 3, ω = 1
}

TEST_F(CoordinatorTest, AClientLeavingAfterItsUpdateStillCountsInThatRoundsN) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  ASSERT_TRUE(c->Leave(1, /*permanent=*/true).ok());
  ASSERT_TRUE(c->CloseRound().ok());
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 1.0f);  // N = 1 this round
  EXPECT_EQ(c->Status().enrolled, 0);                   // and 0 from the next
}

TEST_F(CoordinatorTest, UpdateAfterTheRoundClosedIsAborted) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  ASSERT_TRUE(c->Enroll(2).ok());
  TestUpdate first(1, 0, 0.1f);
  ASSERT_TRUE(c->Submit(first.submission).ok());
  PassDeadline(*c);
  TestUpdate late(2, 0, 0.1f);
  EXPECT_EQ(c->Submit(late.submission).status().code(), absl::StatusCode::kAborted);
}

TEST_F(CoordinatorTest, AReplayAfterItsRoundClosedIsAcknowledgedAsADuplicateAndCountedOnce) {
  // A device whose acknowledgement was lost replays the same update after the round closed.
  auto c = Make();
  for (ClientId id : {1, 2}) ASSERT_TRUE(c->Enroll(id).ok());
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  PassDeadline(*c);
  const std::vector<float> after_close = Values(*c);
  absl::StatusOr<SubmitResult> replay = c->Submit(u.submission);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->duplicate);
  EXPECT_EQ(replay->round, 0);
  EXPECT_EQ(c->Status().accepted, 0);  // not counted in round 1
  EXPECT_EQ(store_.journal_writes(), 1);
  // Client 2 never took part in round 0: its late update is refused, not acknowledged.
  TestUpdate never(2, 0, 1.0f);
  EXPECT_TRUE(absl::IsAborted(c->Submit(never.submission).status()));
  TestUpdate before_enrolment(2, -1, 1.0f);  // its "last participation" is the initial -1
  EXPECT_TRUE(absl::IsAborted(c->Submit(before_enrolment.submission).status()));
  // Still a duplicate after a restart (the participation is durable) and after later rounds.
  c.reset();
  absl::StatusOr<StoredState> state = store_.Load();
  ASSERT_TRUE(state.ok());
  auto recovered = Coordinator::Recover({}, clock_, &store_, *std::move(state));
  ASSERT_TRUE(recovered.ok());
  replay = (*recovered)->Submit(u.submission);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_TRUE(replay->duplicate);
  PassDeadline(**recovered);  // round 1: nobody took part (min_participants 1: extended)
  EXPECT_EQ(Values(**recovered), after_close);
}

TEST_F(CoordinatorTest, TheBarrierPolicyClosesARoundWhenEveryReporterHasReported) {
  CoordinatorOptions options;
  options.round = {.name = "barrier", .reporters = 2};
  auto c = Make(options);
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  PassDeadline(*c);  // ticks never close a barrier round
  EXPECT_EQ(c->current_round(), 0);
  absl::StatusOr<Coordinator::ReportResult> r = c->Report(0, 2, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->closed);
  EXPECT_EQ(r->reported, 1);
  r = c->Report(0, 2, 0);  // the same reporter again changes nothing
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->reported, 1);
  EXPECT_TRUE(absl::IsInvalidArgument(c->Report(2, 2, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(c->Report(0, 3, 0).status()));
  EXPECT_TRUE(absl::IsOutOfRange(c->Report(1, 2, 1).status()));
  r = c->Report(1, 2, 0);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->closed);
  EXPECT_TRUE(r->close_status.ok());
  EXPECT_EQ(r->round, 1);
  EXPECT_EQ(r->reported, 0);
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 1.0f);
  r = c->Report(0, 2, 0);  // a late report of the closed round
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->closed);
  EXPECT_EQ(r->round, 1);
}

TEST_F(CoordinatorTest, ARecoveredBarrierRoundDoesNotCloseAtItsDeadline) {
  CoordinatorOptions options;
  options.round = {.name = "barrier", .reporters = 1};
  auto c = Make(options);
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  c.reset();
  clock_.Advance(absl::Hours(1));
  absl::StatusOr<StoredState> state = store_.Load();
  ASSERT_TRUE(state.ok());
  auto recovered = Coordinator::Recover(options, clock_, &store_, *std::move(state));
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ((*recovered)->current_round(), 0);
  EXPECT_EQ((*recovered)->Status().accepted, 1);
  ASSERT_TRUE((*recovered)->Report(0, 1, 0).ok());
  EXPECT_EQ((*recovered)->current_round(), 1);
}

TEST_F(CoordinatorTest, ADeadlinePolicyTakesNoReports) {
  auto c = Make();
  EXPECT_TRUE(absl::IsFailedPrecondition(c->Report(0, 1, 0).status()) && c->current_round() == 0);
}

TEST_F(CoordinatorTest, NormAboveTheBoundIsClippedWhenConfigured) {
  CoordinatorOptions options;
  options.max_update_norm = 3.0;
  options.norm_policy = NormPolicy::kClip;
  auto c = Make(options);
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 2.0f);  // norm 6
  auto result = c->Submit(u.submission);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->clipped);
  PassDeadline(*c);
  for (float v : Values(*c)) EXPECT_NEAR(v, 1.0f, 1e-6);  // scaled by 3/6
}

TEST_F(CoordinatorTest, FailedJournalWriteIsUnavailableAndTheRetrySucceeds) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  store_.FailNextJournalWrites(1);
  TestUpdate u(1, 0, 1.0f);
  EXPECT_EQ(c->Submit(u.submission).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c->Status().accepted, 0);
  auto retry = c->Submit(u.submission);
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(retry->duplicate);
  PassDeadline(*c);
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 1.0f);
}

TEST_F(CoordinatorTest, QuotaClosesTheRoundEarly) {
  CoordinatorOptions options;
  options.round.max_participants = 2;
  auto c = Make(options);
  for (ClientId id : {1, 2, 3}) ASSERT_TRUE(c->Enroll(id).ok());
  TestUpdate a(1, 0, 1.0f), b(2, 0, 1.0f), late(3, 0, 1.0f);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  ASSERT_TRUE(c->Submit(b.submission).ok());
  EXPECT_EQ(c->current_round(), 1);
  EXPECT_EQ(c->Submit(late.submission).status().code(), absl::StatusCode::kAborted);
}

TEST_F(CoordinatorTest, TooFewParticipantsExtendTheDeadline) {
  CoordinatorOptions options;
  options.round.min_participants = 2;
  auto c = Make(options);
  for (ClientId id : {1, 2}) ASSERT_TRUE(c->Enroll(id).ok());
  TestUpdate a(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  PassDeadline(*c);
  EXPECT_EQ(c->current_round(), 0);
  TestUpdate b(2, 0, 1.0f);
  ASSERT_TRUE(c->Submit(b.submission).ok());
  PassDeadline(*c);
  EXPECT_EQ(c->current_round(), 1);
}

TEST_F(CoordinatorTest, WorkListsModulesToDownloadAndWaitsAfterSubmitting) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  auto work = c->GetWork(1, {});
  ASSERT_TRUE(work.ok());
  EXPECT_EQ(work->action, WorkAssignment::Action::kTrain);
  ASSERT_EQ(work->modules.size(), 1u);
  EXPECT_TRUE(work->modules[0].download);
  work = c->GetWork(1, std::vector<ModuleVersion>{{"m", 0}});
  EXPECT_FALSE(work->modules[0].download);
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  work = c->GetWork(1, std::vector<ModuleVersion>{{"m", 0}});
  EXPECT_EQ(work->action, WorkAssignment::Action::kWait);
  EXPECT_EQ(c->GetWork(42, {}).status().code(), absl::StatusCode::kNotFound);
  PassDeadline(*c);
  work = c->GetWork(1, std::vector<ModuleVersion>{{"m", 0}});
  EXPECT_EQ(work->action, WorkAssignment::Action::kTrain);
  EXPECT_TRUE(work->modules[0].download) << "version 1 is out";
  EXPECT_TRUE(c->GetModule("m", 1).ok());
  EXPECT_EQ(c->GetModule("m", 0).status().code(), absl::StatusCode::kNotFound);
}

// A crash mid-round and a restart from the store give exactly the uninterrupted result.
TEST_F(CoordinatorTest, RecoveryReplaysTheJournalAndKeepsTheDeadline) {
  auto run = [&](bool crash) {
    MemoryStateStore store;
    base::ManualClock clock(absl::FromUnixSeconds(1000));
    std::vector<StoredModule> modules;
    modules.push_back(MakeModule(1.0f));
    auto c = *Coordinator::Create({}, clock, &store, std::move(modules));
    for (ClientId id : {1, 2, 3}) EXPECT_TRUE(c->Enroll(id).ok());
    for (int round = 0; round < 3; ++round) {
      TestUpdate a(1, round, 0.25f * (round + 1), c->Modules()[0].version);
      TestUpdate b(2, round, -0.5f, c->Modules()[0].version);
      EXPECT_TRUE(c->Submit(a.submission).ok());
      if (round != 1) {
        EXPECT_TRUE(c->Submit(b.submission).ok());
      }
      if (crash && round == 2) {
        const absl::Time deadline = c->Status().deadline;
        c.reset();  // the process dies with two acknowledged updates in round 2
        clock.Advance(absl::Seconds(5));
        auto state = store.Load();
        EXPECT_TRUE(state.ok());
        c = *Coordinator::Recover({}, clock, &store, *std::move(state));
        EXPECT_EQ(c->current_round(), 2);
        EXPECT_EQ(c->Status().accepted, 2);
        EXPECT_EQ(c->Status().deadline, deadline);
      }
      clock.Advance(absl::Seconds(31));
      EXPECT_TRUE(c->Tick().ok());
    }
    return Values(*c);
  };
  EXPECT_EQ(run(/*crash=*/true), run(/*crash=*/false));
}

TEST_F(CoordinatorTest, RecoveryClosesARoundWhoseDeadlinePassedWhileDown) {
  auto c = Make();
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  c.reset();
  clock_.Advance(absl::Minutes(5));
  auto recovered = Coordinator::Recover({}, clock_, &store_, *store_.Load());
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ((*recovered)->current_round(), 1);
  for (float v : Values(**recovered)) EXPECT_FLOAT_EQ(v, 1.0f);
}

// The fold is exact: arrival order and thread count change no bit of the result.
TEST_F(CoordinatorTest, ResultDoesNotDependOnArrivalOrderOrThreads) {
  std::vector<std::vector<float>> deltas;
  base::Rng rng(3);
  for (int i = 0; i < 12; ++i) {
    std::vector<float> d(9);
    for (float& v : d) v = static_cast<float>(rng.Normal(0.0, 0.3));
    deltas.push_back(d);
  }
  auto run = [&](std::vector<int> order, int threads) {
    MemoryStateStore store;
    CoordinatorOptions options;
    options.fold_threads = threads;
    std::vector<StoredModule> modules;
    modules.push_back(MakeModule(0.3f));
    auto c = *Coordinator::Create(options, clock_, &store, std::move(modules));
    for (int i = 0; i < 12; ++i) EXPECT_TRUE(c->Enroll(i).ok());
    for (int i : order) {
      std::vector<float> values = deltas[i];
      UpdateSubmission s;
      s.client = i;
      s.modules.push_back({"m", 0, Layout(), absl::MakeSpan(values)});
      EXPECT_TRUE(c->Submit(s).ok());
    }
    EXPECT_TRUE(c->CloseRound().ok());
    return Values(*c);
  };
  std::vector<int> order(12);
  std::iota(order.begin(), order.end(), 0);
  const std::vector<float> reference = run(order, 1);
  std::reverse(order.begin(), order.end());
  EXPECT_EQ(run(order, 2), reference);
  rng.Shuffle(order);
  EXPECT_EQ(run(order, 4), reference);
}

TEST_F(CoordinatorTest, ConcurrentSubmittersEachCountOnce) {
  auto c = Make();
  constexpr int kClients = 32;
  for (int i = 0; i < kClients; ++i) ASSERT_TRUE(c->Enroll(i).ok());
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&c, i] {
      TestUpdate u(i, 0, 1.0f);
      for (int attempt = 0; attempt < 3; ++attempt) {  // duplicates on purpose
        auto result = c->Submit(u.submission);
        EXPECT_TRUE(result.ok() || result.status().code() == absl::StatusCode::kUnavailable);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(c->Status().accepted, kClients);
  ASSERT_TRUE(c->CloseRound().ok());
  for (float v : Values(*c)) EXPECT_FLOAT_EQ(v, 1.0f);
}

// A store that accepts the initial pool and then fails every round close.
class FailingCloseStore final : public StateStore {
 public:
  absl::Status PutClient(const ClientRecord&) override { return absl::OkStatus(); }
  absl::Status JournalUpdate(const JournalEntry&) override { return absl::OkStatus(); }
  absl::Status RoundOpened(const RoundRecord&) override { return absl::OkStatus(); }
  absl::Status RoundClosed(const RoundClose& close) override {
    if (close.closed_round < 0) return absl::OkStatus();
    return absl::ResourceExhaustedError("disk full");
  }
  absl::StatusOr<StoredState> Load() const override { return absl::NotFoundError("empty"); }
};

TEST_F(CoordinatorTest, StorageFailureAtCloseStopsTheCoordinatorWithoutPublishing) {
  FailingCloseStore store;
  std::vector<StoredModule> modules;
  modules.push_back(MakeModule(0.0f));
  auto c = *Coordinator::Create({}, clock_, &store, std::move(modules));
  ASSERT_TRUE(c->Enroll(1).ok());
  TestUpdate u(1, 0, 1.0f);
  ASSERT_TRUE(c->Submit(u.submission).ok());
  EXPECT_EQ(c->CloseRound().code(), absl::StatusCode::kResourceExhausted);
  for (float v : Values(*c)) EXPECT_EQ(v, 0.0f) << "nothing published that is not durable";
  EXPECT_EQ(c->GetWork(1, {}).status().code(), absl::StatusCode::kFailedPrecondition);
}

// FedAU keeps O(d) whatever the number of clients; FedVARP keeps a vector per client (O(N·d)).
TEST_F(CoordinatorTest, FedVarpHoldsAVectorPerClientAndFedAuDoesNot) {
  constexpr int64_t kValues = 4096;
  auto memory_after = [&](const std::string& kind, int clients) {
    CoordinatorOptions options;
    options.aggregator.name = kind;
    MemoryStateStore store;
    StoredModule module;
    module.spec = {"m", ModuleRole::kHead, {}};
    module.values.Add("w", {kValues}, true);
    std::vector<StoredModule> modules;
    modules.push_back(std::move(module));
    auto c = *Coordinator::Create(options, clock_, &store, std::move(modules));
    std::vector<float> delta(kValues, 0.01f);
    for (int i = 0; i < clients; ++i) {
      EXPECT_TRUE(c->Enroll(i).ok());
      UpdateSubmission s;
      s.client = i;
      s.modules.push_back({"m", 0, {{"w", {kValues}}}, absl::MakeSpan(delta)});
      EXPECT_TRUE(c->Submit(s).ok());
    }
    EXPECT_TRUE(c->CloseRound().ok());
    return c->aggregator_memory_bytes();
  };
  const int64_t vector_bytes = kValues * sizeof(float);
  const int64_t fedau_growth = memory_after("adaptive", 40) - memory_after("adaptive", 2);
  const int64_t fedvarp_growth = memory_after("fedvarp", 40) - memory_after("fedvarp", 2);
  EXPECT_LT(fedau_growth, vector_bytes) << "FedAU must not keep anything of size d per client";
  EXPECT_GE(fedvarp_growth, 38 * vector_bytes) << "FedVARP keeps one vector per client";
}

}  // namespace
}  // namespace fedcl::fl

namespace fedcl::fl {
namespace {

// MIFA keeps each client's last update; one that leaves for good is dropped from it, restart or
// not.
TEST_F(CoordinatorTest, RecoveryForgetsTheStoredVectorOfAClientThatLeft) {
  CoordinatorOptions options;
  options.aggregator.name = "mifa";
  auto c = Make(options);
  for (ClientId id : {1, 2}) ASSERT_TRUE(c->Enroll(id).ok());
  TestUpdate a(1, 0, 1.0f), b(2, 0, 3.0f);
  ASSERT_TRUE(c->Submit(a.submission).ok());
  ASSERT_TRUE(c->Submit(b.submission).ok());
  PassDeadline(*c);  // round 0: MIFA stores y_1 = 1, y_2 = 3; x = (1 + 3) / 2 = 2
  ASSERT_TRUE(c->Leave(2, /*permanent=*/true).ok());
  // The server dies before round 1 closes, and comes back from its store.
  c.reset();
  auto recovered = Coordinator::Recover(options, clock_, &store_, *store_.Load());
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  TestUpdate a1(1, 1, 1.0f, /*base_version=*/1);
  auto submitted = (*recovered)->Submit(a1.submission);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  PassDeadline(**recovered);
  // Round 1: only client 1 counts (N = 1, y_1 = 1): x = 2 + 1. With client 2's stale vector
  // still summed it would be 2 + (1 + 3) / 1.
  for (float v : Values(**recovered)) EXPECT_FLOAT_EQ(v, 3.0f);
}

// FedVARP and MIFA keep every client's last delta and their exact sum across rounds, beyond the
// round's budget. Updates that each fit a round would, round after round, push Σ y_j past the
// fixed-point capacity, and the fold of a journaled update cannot fail: each is refused before
// the journal instead, and replacing a client's stored delta by a smaller one makes room again,
// also after a restart. Without the bound, the 20th update aborts the fold (FEDCL_CHECK).
class StoredDeltaBoundTest : public CoordinatorTest,
                             public ::testing::WithParamInterface<const char*> {
 protected:
  static int64_t Version(const Coordinator& c) { return c.Modules()[0].version; }
};

TEST_P(StoredDeltaBoundTest, StoredDeltasTooLargeForTheirExactSumAreRefusedBeforeTheJournal) {
  {
    CoordinatorOptions options;
    options.aggregator.name = GetParam();
    auto c = Make(options);
    constexpr int kClients = 25;
    for (ClientId id = 1; id <= kClients; ++id) ASSERT_TRUE(c->Enroll(id).ok());
    const double budget = Coordinator::kClientMemoryMagnitudeBudget;
    const float step = static_cast<float>(budget * 0.4);  // each fits the round's budget alone
    int accepted = 0;
    for (ClientId id = 1; id <= kClients; ++id) {  // one new client per round
      TestUpdate u(id, c->current_round(), step, Version(*c));
      const int64_t writes = store_.journal_writes();
      absl::StatusOr<SubmitResult> result = c->Submit(u.submission);
      if (result.ok()) {
        ++accepted;
      } else {
        EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
        EXPECT_NE(result.status().message().find("stored deltas"), std::string::npos)
            << result.status();
        EXPECT_EQ(store_.journal_writes(), writes);
      }
      PassDeadline(*c);
    }
    EXPECT_EQ(accepted, 2);  // 2 x 0.4 of the budget; a third would pass it
    // Client 2 replaces its stored delta by a smaller one: there is room for one more again.
    TestUpdate smaller(2, c->current_round(), 0.05f, Version(*c));
    ASSERT_TRUE(c->Submit(smaller.submission).ok());
    PassDeadline(*c);
    // The stored peaks are rebuilt from the stored deltas after a restart.
    c.reset();
    auto recovered = Coordinator::Recover(options, clock_, &store_, *store_.Load());
    ASSERT_TRUE(recovered.ok()) << recovered.status();
    const int64_t round = (*recovered)->current_round();
    TestUpdate too_big(5, round, static_cast<float>(budget * 0.6), Version(**recovered));
    EXPECT_EQ((*recovered)->Submit(too_big.submission).status().code(),
              absl::StatusCode::kInvalidArgument);
    TestUpdate fits(4, round, step, Version(**recovered));
    EXPECT_TRUE((*recovered)->Submit(fits.submission).ok());
    PassDeadline(**recovered);
    for (float v : Values(**recovered)) EXPECT_TRUE(std::isfinite(v));
  }
}

INSTANTIATE_TEST_SUITE_P(ClientMemoryRules, StoredDeltaBoundTest,
                         ::testing::Values("mifa", "fedvarp"));

}  // namespace
}  // namespace fedcl::fl
