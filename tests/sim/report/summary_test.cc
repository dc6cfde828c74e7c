#include "sim/report/summary.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// `json` without spaces and line breaks (none of the names below has any).
std::string Squeezed(std::string json) {
  std::erase_if(json, [](char c) { return c == ' ' || c == '\n'; });
  return json;
}

std::vector<EvalPoint> Evals(std::vector<double> accuracies) {
  std::vector<EvalPoint> evals;
  for (size_t i = 0; i < accuracies.size(); ++i) {
    EvalPoint p;
    p.round = static_cast<int64_t>(10 * (i + 1));
    p.accuracy = accuracies[i];
    evals.push_back(p);
  }
  return evals;
}

TEST(SummaryTest, FinalAccuracyIsTheMeanOfTheLastTenPercent) {
  std::vector<double> acc(20, 0.0);
  acc[18] = 0.6;
  acc[19] = 0.8;
  EXPECT_DOUBLE_EQ(FinalAccuracy(Evals(acc)), 0.7);         // last 2 of 20
  EXPECT_DOUBLE_EQ(FinalAccuracy(Evals({0.1, 0.5})), 0.5);  // at least one
  EXPECT_DOUBLE_EQ(FinalAccuracy(Evals({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0})),
                   1.0);  // ceil(1.1) = 2
}

// The time an asynchronous method takes to reach the synchronous one's final accuracy: the first
// evaluation whose trailing mean over 10% of the run reaches it, averaged over seeds that do.
TEST(SummaryTest, TimeToAccuracyIsWhenTheTrailingMeanReachesTheSynchronousFinal) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "name: 't' population { num_clients: 4 } rounds: 1 method { label: 'sync' } "
      "method { label: 'async' round_policy: 'fedbuff' round_options: 'buffer_size: 2' } "
      "seed: 1 seed: 2",
      "t");
  ASSERT_TRUE(s.ok()) << s.status();
  auto run = [](const std::string& method, std::vector<double> accuracies,
                double seconds_per_eval) {
    RunResult r;
    r.method = method;
    r.pattern = "bernoulli";
    r.evals = Evals(accuracies);
    for (size_t i = 0; i < r.evals.size(); ++i) {
      r.evals[i].virtual_seconds = seconds_per_eval * static_cast<double>(i + 1);
      r.evals[i].updates = static_cast<int64_t>(10 * (i + 1));
    }
    return r;
  };
  // 11 evaluations: windows of 2. The synchronous final accuracy is (0.80 + 0.82)/2 = 0.81 and
  // (0.78 + 0.80)/2 = 0.79 for its seeds: target 0.80.
  std::vector<double> sync1(9, 0.5), sync2(9, 0.5);
  sync1.insert(sync1.end(), {0.80, 0.82});
  sync2.insert(sync2.end(), {0.78, 0.80});
  // Seed 1 of the asynchronous method has a lucky evaluation (0.9 at the 3rd) whose window mean
  // (0.7) does not count; its window reaches 0.80 at the 6th. Seed 2 never does.
  const std::vector<double> async1 = {0.5, 0.5, 0.9, 0.6, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9};
  const std::vector<double> async2(11, 0.6);
  std::vector<MethodSummary> summary =
      Summarize(*s, {run("sync", sync1, 100), run("sync", sync2, 100), run("async", async1, 40),
                     run("async", async2, 40)});
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_NEAR(summary[0].target_accuracy, 0.80, 1e-12);
  EXPECT_NEAR(summary[1].target_accuracy, 0.80, 1e-12);
  EXPECT_FALSE(summary[0].asynchronous);
  // The synchronous seeds: 0.81 reached at the last evaluation, 0.79 never.
  EXPECT_EQ(summary[0].reached_seeds, 1);
  EXPECT_DOUBLE_EQ(summary[0].seconds_to_target, 1100.0);
  EXPECT_TRUE(summary[1].asynchronous);
  EXPECT_EQ(summary[1].reached_seeds, 1);
  EXPECT_DOUBLE_EQ(summary[1].seconds_to_target, 6 * 40.0);
  EXPECT_DOUBLE_EQ(summary[1].updates_to_target, 60.0);
  EXPECT_THAT(SummaryText(summary), HasSubstr("reached 0.8000 at 240 s, 60 updates (1 seed(s))"));
}

TEST(SummaryTest, FindingsSayWhereTheSubjectRanksAndHowFastAsynchronyGetsThere) {
  const MethodSummary fedau{.method = "fedau",
                            .pattern = "bernoulli",
                            .final_accuracy = {0.8, 0.8},
                            .mean = 0.80,
                            .stddev = 0.01,
                            .target_accuracy = 0.80,
                            .reached_seeds = 2,
                            .seconds_to_target = 2000};
  const MethodSummary mifa{.method = "mifa",
                           .pattern = "bernoulli",
                           .final_accuracy = {0.82},
                           .mean = 0.82,
                           .stddev = 0.005};
  const MethodSummary fedbuff{.method = "fedbuff",
                              .pattern = "bernoulli",
                              .final_accuracy = {0.81, 0.81},
                              .mean = 0.81,
                              .asynchronous = true,
                              .target_accuracy = 0.80,
                              .reached_seeds = 2,
                              .seconds_to_target = 500};
  MethodSummary slow = fedbuff;
  slow.method = "slow";
  slow.reached_seeds = 0;
  slow.mean = 0.7;
  MethodSummary cyclic = fedau;
  cyclic.pattern = "cyclic-100";
  EXPECT_EQ(Findings({fedau, mifa, fedbuff, slow, cyclic}),
            "bernoulli: fedau ranks 2 of 2 synchronous methods (0.8000), 2.0 points behind mifa "
            "(0.8200), 2.0 of its std; fedbuff reaches fedau's 0.8000 in 0.25x its virtual time "
            "(500 s in 2 of 2 seeds against 2000 s in 2 of 2) and ends at 0.8100; slow never "
            "reaches 0.8000 (it ends at 0.7000).\n"
            "cyclic-100: fedau ranks 1 of 1 synchronous methods (0.8000).\n");
}

TEST(SummaryTest, SummaryIsMeanAndSampleStdOverSeeds) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "name: 't' population { num_clients: 2 } rounds: 1 method { label: 'a' } seed: 1 seed: 2",
      "t");
  ASSERT_TRUE(s.ok());
  std::vector<RunResult> runs(2);
  runs[0].method = runs[1].method = "a";
  runs[0].pattern = runs[1].pattern = "bernoulli";
  runs[0].evals = Evals({0.5});
  runs[1].evals = Evals({0.7});
  runs[0].updates = 3'000'000'000;  // past 2^31: still a JSON number
  runs[1].updates = 7;
  std::vector<MethodSummary> summary = Summarize(*s, runs);
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_DOUBLE_EQ(summary[0].mean, 0.6);
  EXPECT_NEAR(summary[0].stddev, std::sqrt(0.02), 1e-12);
  absl::StatusOr<std::string> json = SummaryJson(*s, summary, 1.5, 1 << 20);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"final_accuracy_mean\": 0.6"));
  EXPECT_THAT(*json, HasSubstr("\"peak_rss_bytes\": 1048576"));
  EXPECT_THAT(*json, HasSubstr("\"updates\": 3000000007"));
  EXPECT_THAT(*json, HasSubstr("\"stragglers\": 0"));    // zeros print
  EXPECT_THAT(*json, ::testing::EndsWith("\n ]\n}\n"));  // one final newline
}

// The keys users' scripts read, in the order fedcl-sim has always written them.
TEST(SummaryTest, SummaryJsonKeepsEveryKeyInOrder) {
  absl::StatusOr<Scenario> s =
      ParseScenario("name: 't' population { num_clients: 2 } rounds: 1 method { label: 'a' }", "t");
  ASSERT_TRUE(s.ok());
  std::vector<RunResult> runs(1);
  runs[0].method = "a";
  runs[0].pattern = "bernoulli";
  runs[0].evals = Evals({0.25});
  absl::StatusOr<std::string> json = SummaryJson(*s, Summarize(*s, runs), 0, 0);
  ASSERT_TRUE(json.ok()) << json.status();
  size_t at = 0;
  for (const char* key : {"scenario",
                          "clients",
                          "rounds",
                          "wall_seconds",
                          "peak_rss_bytes",
                          "final_accuracy_definition",
                          "methods",
                          "method",
                          "pattern",
                          "final_accuracy_mean",
                          "final_accuracy_std",
                          "final_accuracy_per_seed",
                          "seeds",
                          "wall_seconds",
                          "setup_seconds",
                          "updates",
                          "rss_bytes_at_end",
                          "aggregator_bytes",
                          "stragglers",
                          "dropouts"}) {
    const size_t found = json->find(absl::StrCat("\"", key, "\": "), at);
    ASSERT_NE(found, std::string::npos) << key << " after offset " << at << " in\n" << *json;
    at = found;
  }
}

ClRunResult LaeRun() {
  ClRunResult r;
  r.method = "lae";
  r.seed = 2;
  r.task_names = {"clean", "inversion"};
  r.accuracy = {{0.5, 0.25}, {0.125, 0.75}};
  r.metrics = {.incremental = {0.5, 0.4375},
               .average_incremental = 0.5,
               .last = 0.4375,
               .forgetting = 0.375,
               .backward_transfer = -0.375};
  r.online_accuracy = {{0.5, 0.125}, {0.25, 0.5}};
  r.online_metrics = r.metrics;
  r.ood = {{.detector = "energy", .shift = "inversion", .auroc = 0.625, .fpr95 = 0.875}};
  r.pool = {{.round = 1, .modules = 0}, {.round = 2, .modules = 3, .merges = 1}};
  r.proposals = 4;
  r.bytes_up = 6'000'000'000;
  r.seconds = 1.25;
  return r;
}

TEST(SummaryTest, ContinualSummaryHoldsTheMatricesAndLaesOnlineModule) {
  absl::StatusOr<Scenario> s =
      ParseScenario("name: 'c' population { num_clients: 3 } rounds: 1", "c");
  ASSERT_TRUE(s.ok());
  ClRunResult plain = LaeRun();
  plain.method = "sema";
  plain.online_metrics.reset();
  plain.online_accuracy.clear();
  absl::StatusOr<std::string> summary = ClSummaryJson(*s, {LaeRun(), plain}, 2.5);
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::string json = Squeezed(*summary);
  EXPECT_THAT(json, HasSubstr("{\"scenario\":\"c\",\"kind\":\"\",\"devices\":3,"));
  EXPECT_THAT(json, HasSubstr("\"tasks\":[\"clean\",\"inversion\"],"
                              "\"accuracy\":[[0.5,0.25],[0.125,0.75]],"
                              "\"metrics\":{\"average_incremental\":0.5,\"last\":0.4375,"
                              "\"forgetting\":0.375,\"backward_transfer\":-0.375,"
                              "\"incremental\":[0.5,0.4375]},"
                              "\"online_accuracy\":[[0.5,0.125],[0.25,0.5]],"));
  EXPECT_THAT(
      json,
      HasSubstr("\"ood\":[{\"detector\":\"energy\",\"shift\":\"inversion\","
                "\"auroc\":0.625,\"fpr95\":0.875,\"cusum_delay_median\":-1,"
                "\"cusum_delay_p90\":-1,\"cusum_false_alarms_per_10k\":0}],\"pool_modules\":3,"
                "\"pool_merges\":1,\"proposals\":4,\"growth_refusals\":0,"
                "\"bytes_up\":6000000000,\"bytes_down\":0,\"seconds\":1.25}"));
  EXPECT_THAT(json, Not(HasSubstr("\"pool\":")));  // the series is the report's, not here
  const size_t sema = json.find("\"method\":\"sema\"");
  ASSERT_NE(sema, std::string::npos);
  EXPECT_LT(json.find("\"online_metrics\""), sema);  // LAE's run has it, SEMA's does not
  EXPECT_EQ(json.find("\"online_metrics\"", sema), std::string::npos);
}

TEST(SummaryTest, TextTablesQuoteTheFiguresToFourPlaces) {
  MethodSummary s{.method = "fedau",
                  .pattern = "bernoulli",
                  .final_accuracy = {0.8, 0.9},
                  .mean = 0.85,
                  .stddev = 0.0707106};
  EXPECT_EQ(SummaryText({s}), absl::StrCat("fedau                        bernoulli      final "
                                           "accuracy 0.8500 ± 0.0707 (2 seed(s))\n"));
  const std::string table = ClTextTable({LaeRun()});
  EXPECT_THAT(table, HasSubstr("lae                     2  0.5000  0.4375  0.3750 -0.3750      3"));
  EXPECT_THAT(table, HasSubstr("  lae online only"));
  EXPECT_THAT(table,
              HasSubstr("  energy       inversion        0.6250  0.8750      -1     -1  0.0\n"));
}

}  // namespace
}  // namespace fedcl::sim
