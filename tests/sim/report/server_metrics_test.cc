#include "sim/report/server_metrics.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

// Lines as fedcl-server writes them (server/federation_server.cc), with a key a later server
// might add.
constexpr char kLog[] =
    R"({"round":0,"opened_ms":1796603257282,"closed_ms":1796603262896,"participants":8,"enrolled":20,"samples":640,"mean_loss":1.211041,"weight_min":1.000000,"weight_mean":1.000000,"weight_max":1.000000,"modules":{"backbone":1,"head":1},"pool":{},"pool_merges":0,"accuracy":null}
{"round":1,"opened_ms":1796603262896,"closed_ms":1796603262906,"participants":9,"enrolled":20,"samples":720,"mean_loss":0.556753,"weight_min":1.000000,"weight_mean":1.250000,"weight_max":2.000000,"modules":{"backbone":2,"head":2},"pool":{"block2/m0":{"block":2,"version":1,"contributors":3,"holders":4}},"pool_merges":2,"accuracy":0.4600,"upload_bytes":123}

{"round":2,"participants":0,"accuracy":0.6650})";

TEST(ServerMetricsTest, EvaluatedRoundsBecomeTheRunsEvaluations) {
  absl::StatusOr<RunResult> run = RunFromServerMetrics(kLog, "fedau", "markov-0.1", 5);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->method, "fedau");
  EXPECT_EQ(run->pattern, "markov-0.1");
  EXPECT_EQ(run->seed, 5u);
  EXPECT_EQ(run->updates, 17);  // every round's participants, evaluated or not
  ASSERT_EQ(run->evals.size(), 2u);
  EXPECT_EQ(run->evals[0].round, 2);  // rounds completed
  EXPECT_EQ(run->evals[0].accuracy, 0.46);
  EXPECT_EQ(run->evals[0].participants, 9);
  EXPECT_EQ(run->evals[0].train_loss, 0.556753);
  EXPECT_TRUE(std::isnan(run->evals[0].loss));        // the server does not measure it
  EXPECT_TRUE(std::isnan(run->evals[1].train_loss));  // absent from the line
  EXPECT_EQ(run->evals[1].round, 3);
}

TEST(ServerMetricsTest, ALineThatIsNotAServerMetricsLineIsNamed) {
  auto message = [](absl::string_view log) {
    absl::StatusOr<RunResult> run = RunFromServerMetrics(log, "m", "p", 1);
    EXPECT_TRUE(absl::IsInvalidArgument(run.status()));
    return std::string(run.status().message());
  };
  EXPECT_THAT(message("{\"round\":0,\"participants\":1,\"accuracy\":0.5}\n{\"round\":1,"),
              ::testing::StartsWith("line 2 is not a fedcl-server metrics line"));
  EXPECT_THAT(message("{\"round\":0,\"accuracy\":0.5}"),  // no participants
              ::testing::StartsWith("line 1 is not a fedcl-server metrics line"));
  EXPECT_THAT(message("{\"round\":0,\"participants\":3}"),  // no accuracy, not even null
              ::testing::StartsWith("line 1 is not"));
  EXPECT_EQ(message("{\"round\":0,\"participants\":3,\"accuracy\":null}"),
            "the server's metrics hold no evaluated round");
}

}  // namespace
}  // namespace fedcl::sim
