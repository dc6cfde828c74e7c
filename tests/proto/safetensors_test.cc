// The safetensors codec (proto/safetensors.h): a file written by hand, as the format's
// specification lays it out, decodes to its values (F16 and BF16 exactly); what EncodeSafetensors
// writes parses back bit for bit; and every lie a header can tell is refused, naming it.
#include "proto/safetensors.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace fedcl::proto {
namespace {

// A file from a header's JSON text and its data, as the specification lays it out.
std::string File(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));  // little-endian
  return out;
}

TEST(SafetensorsTest, AFileWrittenByHandDecodesToItsValues) {
  const std::string data = Bytes<float>({1.5f, -2.0f, 0.25f, 3.0f}) +
                           Bytes<uint16_t>({0x3C00, 0xC100, 0x0001, 0x7BFF}) +  // F16
                           Bytes<uint16_t>({0x3F80, 0xC040}) +                  // BF16
                           Bytes<double>({0.1}) + Bytes<int64_t>({7});
  const std::string json = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                           R"("h":{"dtype":"F16","shape":[4],"data_offsets":[16,24]},)"
                           R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
                           R"("d":{"dtype":"F64","shape":[],"data_offsets":[28,36]},)"
                           R"("i":{"dtype":"I64","shape":[1],"data_offsets":[36,44]},)"
                           R"("__metadata__":{"format":"pt"}})";
  const std::string bytes = File(json, data);  // the tensors' data point into it
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors.size(), 5u);
  EXPECT_EQ(file->metadata.at("format"), "pt");
  // In the order of their data.
  EXPECT_EQ(file->tensors[0].name, "w");
  EXPECT_EQ(file->tensors[0].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(*SafetensorsFloats(file->tensors[0]), (std::vector<float>{1.5f, -2.0f, 0.25f, 3.0f}));
  EXPECT_EQ(*SafetensorsFloats(file->tensors[1]),
            (std::vector<float>{1.0f, -2.5f, std::ldexp(1.0f, -24), 65504.0f}));
  EXPECT_EQ(*SafetensorsFloats(file->tensors[2]), (std::vector<float>{1.0f, -3.0f}));
  EXPECT_EQ(file->tensors[3].num_values(), 1);
  EXPECT_EQ(*SafetensorsFloats(file->tensors[3]), (std::vector<float>{0.1f}));
  absl::StatusOr<std::vector<float>> ints = SafetensorsFloats(file->tensors[4]);
  EXPECT_TRUE(absl::IsInvalidArgument(ints.status()));
  EXPECT_TRUE(absl::StrContains(ints.status().message(), "'i' has dtype I64")) << ints.status();
}

TEST(SafetensorsTest, EveryHalfPrecisionValueDecodesExactly) {
  // Against the definition: (-1)^s · 2^(e-15) · (1 + m/1024), subnormals 2^-14 · m/1024.
  std::string data;
  for (uint32_t h = 0; h < 65536; ++h) data += Bytes<uint16_t>({static_cast<uint16_t>(h)});
  const std::string json = R"({"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}})";
  const std::string bytes = File(json, data);
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  const std::vector<float> values = *SafetensorsFloats(file->tensors[0]);
  for (uint32_t h = 0; h < 65536; ++h) {
    const int sign = (h >> 15) ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) {
      ASSERT_TRUE(m == 0 ? std::isinf(values[h]) : std::isnan(values[h])) << h;
      continue;
    }
    const double expected =
        sign * (e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, e - 15));
    ASSERT_EQ(values[h], static_cast<float>(expected)) << h;
    ASSERT_EQ(std::signbit(values[h]), sign < 0) << h;
  }
}

TEST(SafetensorsTest, WhatItWritesParsesBackBitForBit) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> values = {
      std::vector<float>(12), std::vector<float>(7), std::vector<float>(1), {}};
  for (auto& v : values)
    for (float& x : v) x = normal(rng);
  const std::vector<SafetensorsOutput> tensors = {{"layers.0.weight", {3, 4}, values[0]},
                                                  {"layers.0.bias", {7}, values[1]},
                                                  {"scalar", {}, values[2]},
                                                  {"empty", {0, 5}, values[3]}};
  const std::string bytes =
      EncodeSafetensors(tensors, {{"fedcl.model_config", "backbone: \"mlp\""}});
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  EXPECT_EQ(header % 8, 0u) << "the data is aligned";
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("fedcl.model_config"), "backbone: \"mlp\"");
  ASSERT_EQ(file->tensors.size(), 4u);
  for (const SafetensorsOutput& t : tensors) {
    bool found = false;
    for (const SafetensorsTensor& parsed : file->tensors) {
      if (parsed.name != t.name) continue;
      found = true;
      EXPECT_EQ(parsed.dtype, "F32");
      EXPECT_EQ(parsed.shape, t.shape);
      const std::vector<float> back = *SafetensorsFloats(parsed);
      ASSERT_EQ(back.size(), t.values.size());
      EXPECT_EQ(std::memcmp(back.data(), t.values.data(), back.size() * sizeof(float)), 0);
    }
    EXPECT_TRUE(found) << t.name;
  }
}

TEST(SafetensorsTest, HeadersThatLieAreRefusedNamingWhat) {
  const std::string eight(8, 'x');
  auto f32 = [](const std::string& name, const std::string& shape, const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}";
  };
  struct Case {
    const char* what;
    std::string bytes;
    const char* message;
  };
  std::string past = File("{}", "");
  past[0] = 100;
  std::string huge_header = File("{}", "");
  huge_header[7] = 1;
  const std::vector<Case> cases = {
      {"a short file", "abc", "not a header"},
      {"a header length past the file", past, "past the file"},
      {"a header length of 2^56", huge_header, "past the file"},
      {"a header that is not JSON", File("{not json", ""), "not a JSON object"},
      {"a header that is an array", File("[1,2]", ""), "not a JSON object"},
      {"a tensor without dtype", File(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", eight),
       "'t' has no string dtype"},
      {"a dtype safetensors does not define",
       File(R"({"t":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", eight),
       "'t' has dtype 'F12'"},
      {"a negative dimension", File("{" + f32("t", "[-2]", "[0,8]") + "}", eight),
       "'t''s shape is not a non-negative integer"},
      {"a fractional dimension", File("{" + f32("t", "[1.5]", "[0,8]") + "}", eight),
       "'t''s shape is not a non-negative integer"},
      {"offsets past the data", File("{" + f32("t", "[2]", "[0,16]") + "}", eight),
       "not within the data"},
      {"offsets backwards", File("{" + f32("t", "[0]", "[8,0]") + "}", eight),
       "not within the data"},
      {"bytes that do not match the shape", File("{" + f32("t", "[1]", "[0,8]") + "}", eight),
       "'t' has 8 bytes for 1 values"},
      {"a shape past the data", File("{" + f32("t", "[3]", "[0,8]") + "}", eight),
       "more values than the file's data"},
      {"a shape past the data, overflowing",
       File("{" + f32("t", "[4294967296,4294967296]", "[0,8]") + "}", eight),
       "more values than the file's data"},
      {"overlapping tensors",
       File("{" + f32("a", "[2]", "[0,8]") + "," + f32("b", "[1]", "[4,8]") + "}", eight),
       "must not overlap or leave holes"},
      {"a hole", File("{" + f32("a", "[1]", "[4,8]") + "}", eight),
       "must not overlap or leave holes"},
      {"bytes after the last tensor", File("{" + f32("a", "[1]", "[0,4]") + "}", eight),
       "4 bytes after the last tensor"},
      {"metadata that is not strings", File(R"({"__metadata__":{"epochs":3}})", ""),
       "'epochs' is not a string"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<SafetensorsFile> file = ParseSafetensors(c.bytes);
    EXPECT_TRUE(absl::IsInvalidArgument(file.status())) << c.what << ": " << file.status();
    EXPECT_TRUE(absl::StrContains(file.status().message(), c.message))
        << c.what << ": " << file.status();
  }
}

}  // namespace
}  // namespace fedcl::proto
