#include "proto/json.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/fedcl/v1/sim_report.pb.h"

namespace fedcl::proto {
namespace {

using ::testing::HasSubstr;

TEST(JsonTest, SetFieldsPrintInFieldOrderWithProtoNamesZerosIncluded) {
  v1::OodRecord record;
  record.set_fpr95(0.25);  // set out of order
  record.set_detector("max_softmax");
  record.set_auroc(0);  // explicit presence: a zero prints
  EXPECT_EQ(*PrintJson(record), "{\"detector\":\"max_softmax\",\"auroc\":0,\"fpr95\":0.25}");
  EXPECT_EQ(*PrintJson(record, JsonLayout::kIndented),
            "{\n \"detector\": \"max_softmax\",\n \"auroc\": 0,\n \"fpr95\": 0.25\n}");
}

TEST(JsonTest, NumbersThatJsonLacksAreNull) {
  EXPECT_EQ(JsonNumber(std::nan("")).kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(JsonNumber(-INFINITY).kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(JsonNumber(-0.5).number_value(), -0.5);
  v1::ClMetricsLine line;
  *line.mutable_pool()->add_values()->mutable_list_value() = JsonArray({1, NAN, 2.5});
  EXPECT_EQ(*PrintJson(line), "{\"pool\":[[1,null,2.5]]}");
}

TEST(JsonTest, StringsThatAreNotUtf8AreRefusedNamingTheField) {
  v1::ClSummary summary;
  summary.set_scenario("fine");
  summary.add_runs()->add_ood()->set_shift("bad \xc3");
  absl::StatusOr<std::string> json = PrintJson(summary);
  EXPECT_TRUE(absl::IsInvalidArgument(json.status()));
  EXPECT_THAT(json.status().message(), HasSubstr("fedcl.v1.OodRecord.shift is not UTF-8"));
}

TEST(JsonTest, ParseClearsTheMessageAndRefusesUnknownKeysUnlessAsked) {
  v1::ServerMetricsLine line;
  line.set_samples(99);
  ASSERT_TRUE(ParseJson("{\"round\":4,\"accuracy\":null,\"modules\":{\"head\":3}}", &line).ok());
  EXPECT_FALSE(line.has_samples());  // cleared first
  EXPECT_EQ(line.round(), 4);
  EXPECT_EQ(line.accuracy().kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(line.modules().at("head"), 3);
  const std::string extended = "{\"round\":5,\"upload_bytes\":7}";
  EXPECT_TRUE(absl::IsInvalidArgument(ParseJson(extended, &line)));
  ASSERT_TRUE(ParseJson(extended, &line, /*ignore_unknown_fields=*/true).ok());
  EXPECT_EQ(line.round(), 5);
  EXPECT_TRUE(absl::IsInvalidArgument(ParseJson("{\"round\":", &line)));
}

}  // namespace
}  // namespace fedcl::proto
