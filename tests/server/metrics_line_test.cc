#include "server/metrics_line.h"

#include <cmath>
#include <limits>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace fedcl::server {
namespace {

// Parses `line` as a JSON object with protobuf's strict parser; fails the test if it is not one.
google::protobuf::Struct Parse(const std::string& line) {
  google::protobuf::Struct parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(line, &parsed);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << line;
  return parsed;
}

fl::RoundReport Report() {
  fl::RoundReport r;
  r.round = 3;
  r.opened = absl::FromUnixMillis(1000);
  r.closed = absl::FromUnixMillis(31000);
  r.participants = 8;
  r.enrolled = 10;
  r.samples = 512;
  r.mean_loss = 0.4123456;
  r.weight_min = 1.0;
  r.weight_mean = 1.25;
  r.weight_max = 2.0;
  r.modules = {{"head", 4}, {"ssf", 2}};
  r.pool = {{"block1/m1", 1, 3, 2, 4}};
  r.pool_merges = 1;
  r.staleness_mean = 1.25;
  r.staleness_max = 3;
  return r;
}

TEST(MetricsLineTest, AnOrdinaryRoundKeepsItsFieldsAndValues) {
  const google::protobuf::Struct parsed = Parse(MetricsLine(Report(), 0.81234));
  const auto& f = parsed.fields();
  EXPECT_EQ(f.at("round").number_value(), 3);
  EXPECT_EQ(f.at("closed_ms").number_value(), 31000);
  EXPECT_NEAR(f.at("mean_loss").number_value(), 0.412346, 1e-12);
  EXPECT_EQ(f.at("modules").struct_value().fields().at("ssf").number_value(), 2);
  const auto& pool = f.at("pool").struct_value().fields().at("block1/m1").struct_value().fields();
  EXPECT_EQ(pool.at("holders").number_value(), 4);
  EXPECT_NEAR(f.at("accuracy").number_value(), 0.8123, 1e-12);
  EXPECT_NEAR(f.at("staleness_mean").number_value(), 1.25, 1e-12);
  EXPECT_EQ(f.at("staleness_max").number_value(), 3);
  EXPECT_EQ(Parse(MetricsLine(Report(), std::nullopt)).fields().at("accuracy").kind_case(),
            google::protobuf::Value::kNullValue);
}

// Whatever the report holds, the line parses: non-finite numbers become null, huge ones take the
// exponent form, and names with quotes, control characters or bytes that are not UTF-8 are
// escaped.
TEST(MetricsLineTest, NonFiniteNumbersAndHostileNamesStillMakeValidJson) {
  fl::RoundReport r = Report();
  r.mean_loss = std::numeric_limits<double>::infinity();
  r.weight_min = std::nan("");
  r.weight_mean = -std::numeric_limits<double>::infinity();
  r.weight_max = 1e308;
  r.modules = {{"a\"b\\c\n\x01\x7f", 1},
               {std::string("\xff\xfe\xc3(\xe2\x82", 6), 2},
               {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 3}};
  const google::protobuf::Struct parsed = Parse(MetricsLine(r, std::nan("")));
  const auto& f = parsed.fields();
  EXPECT_EQ(f.at("mean_loss").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(f.at("weight_min").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(f.at("weight_mean").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(f.at("accuracy").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(f.at("weight_max").number_value(), 1e308);
  const auto& modules = f.at("modules").struct_value().fields();
  EXPECT_EQ(modules.at("a\"b\\c\n\x01\x7f").number_value(), 1);
  EXPECT_EQ(
      modules.at("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd").number_value(), 2)
      << "each byte that is not UTF-8 becomes U+FFFD";
  EXPECT_EQ(modules.at("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80").number_value(), 3)
      << "valid UTF-8 is kept as is";
}

TEST(MetricsLineTest, JsonNumberWritesNullForWhatJsonCannotHold) {
  EXPECT_EQ(JsonNumber(0.5), "0.500000");
  EXPECT_EQ(JsonNumber(-2.0, 2), "-2.00");
  EXPECT_EQ(JsonNumber(1e300), "1.000000e+300");
  EXPECT_EQ(JsonNumber(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(JsonNumber(std::nan("")), "null");
  EXPECT_EQ(JsonString("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"") << "a surrogate is not UTF-8";
  EXPECT_EQ(JsonString("\xc0\xaf"), "\"\\ufffd\\ufffd\"") << "nor is an overlong form";
}

}  // namespace
}  // namespace fedcl::server
