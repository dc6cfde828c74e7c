#include "sim/report/outputs.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;

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

TEST(OutputsTest, FinalAccuracyIsTheMeanOfTheLastTenPercent) {
  std::vector<double> acc(20, 0.0);
  acc[18] = 0.6;
  acc[19] = 0.8;
  EXPECT_DOUBLE_EQ(FinalAccuracy(Evals(acc)), 0.7);         // last 2 of 20
  EXPECT_DOUBLE_EQ(FinalAccuracy(Evals({0.1, 0.5})), 0.5);  // at least one
  EXPECT_DOUBLE_EQ(FinalAccuracy(Evals({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0})),
                   1.0);  // ceil(1.1) = 2
}

TEST(OutputsTest, SummaryIsMeanAndSampleStdOverSeeds) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "name: 't' population { num_clients: 2 } rounds: 1 method { label: 'a' } seed: 1 seed: 2",
      "t");
  ASSERT_TRUE(s.ok());
  std::vector<RunResult> runs(2);
  runs[0].method = runs[1].method = "a";
  runs[0].pattern = runs[1].pattern = "bernoulli";
  runs[0].evals = Evals({0.5});
  runs[1].evals = Evals({0.7});
  std::vector<MethodSummary> summary = Summarize(*s, runs);
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_DOUBLE_EQ(summary[0].mean, 0.6);
  EXPECT_NEAR(summary[0].stddev, std::sqrt(0.02), 1e-12);
  const std::string json = SummaryJson(*s, summary, 1.5, 1 << 20);
  EXPECT_THAT(json, HasSubstr("\"final_accuracy_mean\": 0.6"));
  EXPECT_THAT(json, HasSubstr("\"peak_rss_bytes\": 1048576"));
}

TEST(OutputsTest, MetricsLineIsOneJsonObject) {
  RunResult run;
  run.method = "fed\"au";
  run.pattern = "cyclic-100";
  run.seed = 3;
  EvalPoint p;
  p.round = 10;
  p.accuracy = 0.5;
  p.bytes_up = 123;
  const std::string line = MetricsLine(run, p);
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.back(), '}');
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_THAT(line, HasSubstr("\"method\":\"fed\\\"au\""));
  EXPECT_THAT(line, HasSubstr("\"fedau_weight_error\":null"));
  EXPECT_THAT(line, HasSubstr("\"bytes_up\":123"));
}

TEST(OutputsTest, ReportInlinesTheLibraryAndEscapesNames) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "name: '<b>t</b>' population { num_clients: 2 } rounds: 1 method { label: 'a</script>' }",
      "t");
  ASSERT_TRUE(s.ok());
  std::vector<RunResult> runs(1);
  runs[0].method = "a</script>";
  runs[0].pattern = "bernoulli";
  runs[0].evals = Evals({0.5});
  const std::string html = ReportHtml(*s, runs, {}, Summarize(*s, runs), "var echarts = 1;");
  EXPECT_THAT(html, HasSubstr("var echarts = 1;"));
  EXPECT_THAT(html, Not(HasSubstr("<b>t</b>")));
  // The only "</script>" strings close our own three script elements.
  size_t count = 0;
  for (size_t at = html.find("</script>"); at != std::string::npos;
       at = html.find("</script>", at + 1))
    ++count;
  EXPECT_EQ(count, 3u);
}

}  // namespace
}  // namespace fedcl::sim
