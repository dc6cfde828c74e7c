#include "sim/report/html.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::sim {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The JSON the page's charts draw from.
std::string ReportData(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"report-data\">";
  const size_t from = html.find(open) + open.size();
  return html.substr(from, html.find("</script>", from) - from);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t count = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

TEST(ReportHtmlTest, ReportInlinesTheLibraryAndEscapesNames) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "name: '<b>t</b>' population { num_clients: 2 } rounds: 1 method { label: 'a</script>' }",
      "t");
  ASSERT_TRUE(s.ok());
  std::vector<RunResult> runs(1);
  runs[0].method = "a</script>";
  runs[0].pattern = "bernoulli";
  runs[0].evals = {{.round = 1, .accuracy = 0.5}};
  absl::StatusOr<std::string> html =
      ReportHtml(*s, runs, {}, Summarize(*s, runs), "var echarts = 1;");
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("var echarts = 1;"));
  EXPECT_THAT(*html, Not(HasSubstr("<b>t</b>")));
  EXPECT_THAT(*html, HasSubstr("<title>fedcl-sim: &lt;b&gt;t&lt;/b&gt;</title>"));
  // The only "</script>" strings close our own three script elements.
  EXPECT_EQ(Count(*html, "</script>"), 3u);
}

// Per pattern: each method's accuracy averaged over seeds, the heat-map binned, FedAU's weights.
TEST(ReportHtmlTest, DataHoldsTheSeriesTheHeatmapAndTheWeights) {
  absl::StatusOr<Scenario> s = ParseScenario(
      "name: 'r' population { num_clients: 3 } rounds: 2 method { label: 'fedau' } "
      "method { label: 'mifa' } seed: 1 seed: 2",
      "r");
  ASSERT_TRUE(s.ok());
  std::vector<RunResult> runs(2);
  for (int i = 0; i < 2; ++i) {
    runs[i].method = "fedau";
    runs[i].pattern = "bernoulli";
    runs[i].seed = i + 1;
    runs[i].evals = {{.round = 2, .accuracy = i == 0 ? 0.5 : 0.75}};
  }
  runs[0].inverse_probability_vs_weight = {{4, 3.5}, {10, 9.25}};
  ParticipationMap map{.clients = 2, .rounds = 2, .participated = {1, 0, 1, 1}};
  absl::StatusOr<std::string> html =
      ReportHtml(*s, runs, {{"bernoulli", map}}, Summarize(*s, runs), "");
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_EQ(ReportData(*html),
            "{\"patterns\":[{\"name\":\"bernoulli\",\"methods\":["
            "{\"label\":\"fedau\",\"accuracy\":[[2,0.625]]},{\"label\":\"mifa\",\"accuracy\":[]}],"
            "\"heatmap\":{\"clients\":2,\"bins\":2,\"bin_rounds\":1,"
            "\"cells\":[[0,0,1],[0,1,1],[1,1,1]]},"
            "\"weights_method\":\"fedau\",\"weights\":[[4,3.5],[10,9.25]]}]}");
  EXPECT_THAT(*html, HasSubstr("<td>fedau</td><td>bernoulli</td><td>0.6250 ± 0.1768</td>"));
}

TEST(ReportHtmlTest, ContinualReportHasBothTablesAndThePoolSeries) {
  absl::StatusOr<Scenario> s =
      ParseScenario("name: 'c' population { num_clients: 2 } rounds: 1", "c");
  ASSERT_TRUE(s.ok());
  ClRunResult r;
  r.method = "sema";
  r.seed = 1;
  r.task_names = {"clean"};
  r.accuracy = {{0.5}};
  r.metrics.incremental = {0.5};
  r.ood = {{.detector = "hdc", .shift = "<unseen>", .auroc = 0.75, .fpr95 = 0.5}};
  r.pool = {{.round = 1, .modules = 2, .merges = 1, .adapters_per_device = 2.5}};
  absl::StatusOr<std::string> html = ClReportHtml(*s, {r}, "");
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("<td>sema</td><td>1</td><td>0.0000</td>"));
  EXPECT_THAT(*html, HasSubstr("<td>hdc</td><td>&lt;unseen&gt;</td><td>0.7500</td>"));
  const std::string data = ReportData(*html);
  EXPECT_THAT(data, HasSubstr("\"shift\":\"\\u003cunseen\\u003e\""));  // no "<" in a script
  EXPECT_THAT(data, ::testing::EndsWith(",\"pool\":[[1,2,1,2.5]]}]}"));
  EXPECT_EQ(Count(*html, "</script>"), 3u);
}

}  // namespace
}  // namespace fedcl::sim
