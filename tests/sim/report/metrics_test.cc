#include "sim/report/metrics.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

// The expected lines are what fedcl-sim wrote before its JSON went through protobuf (printf
// with %.10g): the same keys in the same order, the same values.
TEST(MetricsTest, MetricsLineIsOneJsonObjectWithEveryKey) {
  RunResult run;
  run.method = "fed\"au";
  run.pattern = "cyclic-100";
  run.seed = 3;
  EvalPoint p;
  p.round = 10;
  p.accuracy = 0.5;
  p.bytes_up = 123;
  EXPECT_EQ(*MetricsLine(run, p),
            "{\"method\":\"fed\\\"au\",\"pattern\":\"cyclic-100\",\"seed\":3,\"round\":10,"
            "\"accuracy\":0.5,\"loss\":0,\"train_loss\":0,\"participants\":0,\"bytes_up\":123,"
            "\"bytes_down\":0,\"fedau_weight_error\":null,\"wall_seconds\":0,"
            "\"virtual_seconds\":0,\"updates\":0,\"local_mean_accuracy\":null}");
}

TEST(MetricsTest, UndefinedValuesAreNullAndLargeCountsStayNumbers) {
  RunResult run{.method = "fedau", .pattern = "bernoulli", .seed = 9'007'199'254'740'992};
  EvalPoint p{.round = 20,
              .accuracy = 0.8125,
              .loss = std::nan(""),
              .train_loss = INFINITY,
              .participants = 17,
              .updates = 5'000'000'001,
              .bytes_up = 5'000'000'123,
              .bytes_down = 6'000'000'000,
              .weight_error = 0.375,
              .wall_seconds = 1.5,
              .virtual_seconds = 3600.25,
              .local_mean_accuracy = 0.75};
  EXPECT_EQ(*MetricsLine(run, p),
            "{\"method\":\"fedau\",\"pattern\":\"bernoulli\",\"seed\":9007199254740992,"
            "\"round\":20,\"accuracy\":0.8125,\"loss\":null,\"train_loss\":null,"
            "\"participants\":17,\"bytes_up\":5000000123,\"bytes_down\":6000000000,"
            "\"fedau_weight_error\":0.375,\"wall_seconds\":1.5,\"virtual_seconds\":3600.25,"
            "\"updates\":5000000001,\"local_mean_accuracy\":0.75}");
}

// Doubles print so that they read back exactly (more digits than %.10g when needed).
TEST(MetricsTest, AccuracyReadsBackToTheSameDouble) {
  RunResult run{.method = "m", .pattern = "p", .seed = 1};
  const double accuracy = 2.0 / 3.0;
  const std::string line = *MetricsLine(run, {.round = 1, .accuracy = accuracy});
  const size_t at = line.find("\"accuracy\":") + 11;
  EXPECT_EQ(std::strtod(line.c_str() + at, nullptr), accuracy) << line;
}

TEST(MetricsTest, EveryEvaluationIsALine) {
  RunResult run{.method = "m", .pattern = "p", .seed = 1};
  run.evals = {{.round = 10, .accuracy = 0.25}, {.round = 20, .accuracy = 0.5}};
  absl::StatusOr<std::string> lines = MetricsLines(run);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(*lines, absl::StrCat(*MetricsLine(run, run.evals[0]), "\n",
                                 *MetricsLine(run, run.evals[1]), "\n"));
}

TEST(MetricsTest, ContinualLinesAreOnePerTaskThenThePool) {
  ClRunResult run;
  run.method = "sema";
  run.seed = 2;
  run.task_names = {"clean", "inversion"};
  run.accuracy = {{0.5, 0.25}, {0.125, 0.75}};
  run.pool = {{.round = 1, .modules = 0, .merges = 0, .adapters_per_device = 2},
              {.round = 2, .modules = 1, .merges = 1, .adapters_per_device = 2.5}};
  EXPECT_EQ(*ClMetricsLines(run),
            "{\"method\":\"sema\",\"seed\":2,\"after_task\":0,\"task\":\"clean\","
            "\"accuracy\":[0.5,0.25]}\n"
            "{\"method\":\"sema\",\"seed\":2,\"after_task\":1,\"task\":\"inversion\","
            "\"accuracy\":[0.125,0.75]}\n"
            "{\"method\":\"sema\",\"seed\":2,\"pool\":[[1,0,0,2],[2,1,1,2.5]]}\n");
  run.pool.clear();  // no server: the pool line is still there, empty
  EXPECT_THAT(*ClMetricsLines(run), ::testing::EndsWith("{\"method\":\"sema\",\"seed\":2,"
                                                        "\"pool\":[]}\n"));
}

TEST(MetricsTest, NamesThatAreNotUtf8AreRefused) {
  RunResult run{.method = "\xff\xfe", .pattern = "p", .seed = 1};
  EXPECT_TRUE(absl::IsInvalidArgument(MetricsLine(run, {}).status()));
}

TEST(MetricsLogTest, LinesAreThereAsSoonAsTheyAreAppended) {
  const std::string path = ::testing::TempDir() + "/metrics_log_test.jsonl";
  auto read = [&] {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  {
    std::ofstream(path) << "left over from an earlier run\n";
    absl::StatusOr<std::unique_ptr<MetricsLog>> log = MetricsLog::Create(path);
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_EQ(read(), "");  // truncated
    ASSERT_TRUE((*log)->Append("{\"a\":1}\n").ok());
    EXPECT_EQ(read(), "{\"a\":1}\n");  // flushed, before the log closes
    ASSERT_TRUE((*log)->Append("{\"b\":2}\n{\"c\":3}\n").ok());
  }
  EXPECT_EQ(read(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
  std::remove(path.c_str());
  EXPECT_TRUE(absl::IsUnavailable(MetricsLog::Create("/nonexistent-dir/m.jsonl").status()));
}

}  // namespace
}  // namespace fedcl::sim
