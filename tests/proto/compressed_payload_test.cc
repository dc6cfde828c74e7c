// Compressed deltas on the wire (proto/compressed_payload.h, proto/update_codec.h): the bytes a
// device sends decode on the server to exactly what the device folded into its residual, a header
// can only declare payloads its codec can take, and every malformed payload is refused naming its
// module before anything is folded.
#include "proto/compressed_payload.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/base/crc32.h"
#include "core/fl/compression.h"
#include "gtest/gtest.h"
#include "proto/update_codec.h"

namespace fedcl::proto {
namespace {

fl::CompressionSpec Spec(absl::string_view text) {
  absl::StatusOr<fl::CompressionSpec> spec = fl::ParseCompressionSpec(text);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

// Values of mixed scales and signs (a few large, most small), as deltas are.
std::vector<float> RandomDelta(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(-4.0f, 1.0f);
  std::vector<float> values(size);
  for (float& v : values) v = normal(rng) * std::pow(10.0f, scale(rng));
  return values;
}

std::vector<float> Decoded(const fl::CompressedValues& c) {
  std::vector<float> out(static_cast<size_t>(c.size));
  EXPECT_TRUE(fl::Decompress(c, absl::MakeSpan(out)).ok());
  return out;
}

const char* const kCodecs[] = {"float32", "float16",    "int8:8",        "int8:256",
                               "topk:1",  "topk:0.3:8", "topk:0.05:256", "topk:0.0001:8"};

// Sizes around the block sizes, one, and one large enough for gaps of 3-byte varints.
const size_t kSizes[] = {1, 7, 8, 9, 255, 256, 257, 1000, 300000};

TEST(CompressedPayloadTest, EveryCodecTravelsInExactlyItsBytesAndParsesBackToTheSameValues) {
  uint32_t seed = 1;
  for (const char* text : kCodecs) {
    for (size_t size : kSizes) {
      SCOPED_TRACE(testing::Message() << text << ", " << size << " values");
      const fl::CompressedValues sent = fl::Compress(RandomDelta(size, seed++), Spec(text));
      std::string bytes = "prefix";  // appends, keeping what was there
      AppendCompressedPayload(sent, &bytes);
      ASSERT_EQ(bytes.size(), 6 + static_cast<size_t>(sent.bytes()));
      EXPECT_EQ(bytes.substr(0, 6), "prefix");
      const fl::PayloadBounds bounds =
          fl::PayloadBytesBounds(sent.spec, static_cast<int64_t>(size));
      EXPECT_LE(bounds.min, sent.bytes());
      EXPECT_GE(bounds.max, sent.bytes());
      absl::StatusOr<fl::CompressedValues> got = ParseCompressedPayload(
          sent.spec, static_cast<int64_t>(size), absl::string_view(bytes).substr(6));
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->raw, sent.raw);
      EXPECT_EQ(got->halves, sent.halves);
      EXPECT_EQ(got->quantized, sent.quantized);
      EXPECT_EQ(got->indices, sent.indices);
      ASSERT_EQ(got->scales.size(), sent.scales.size());
      EXPECT_EQ(0, std::memcmp(got->scales.data(), sent.scales.data(),
                               sent.scales.size() * sizeof(float)));
      const std::vector<float> a = Decoded(sent), b = Decoded(*got);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "bit for bit";
    }
  }
}

TEST(CompressedPayloadTest, APayloadWithBytesMissingOrLeftOverIsRefused) {
  for (const char* text : kCodecs) {
    SCOPED_TRACE(text);
    const fl::CompressedValues sent = fl::Compress(RandomDelta(300, 7), Spec(text));
    std::string bytes;
    AppendCompressedPayload(sent, &bytes);
    absl::Status shorter =
        ParseCompressedPayload(sent.spec, 300, absl::string_view(bytes).substr(0, bytes.size() - 1))
            .status();
    EXPECT_TRUE(absl::IsInvalidArgument(shorter)) << shorter;
    EXPECT_TRUE(absl::IsInvalidArgument(ParseCompressedPayload(sent.spec, 300, "").status()));
    absl::Status longer = ParseCompressedPayload(sent.spec, 300, bytes + "x").status();
    EXPECT_TRUE(absl::IsInvalidArgument(longer)) << longer;
    EXPECT_NE(longer.message().find("1 bytes after"), absl::string_view::npos) << longer;
  }
}

TEST(CompressedPayloadTest, GapsThatAreNotIndicesAreRefused) {
  const fl::CompressionSpec two_of_four = Spec("topk:0.5:8");  // k = 2 of 4
  auto parse = [&](const std::string& gaps) {
    // Two gaps, one scale, two int8.
    std::string bytes = gaps + std::string(4, '\0') + std::string(2, '\x01');
    return ParseCompressedPayload(two_of_four, 4, bytes).status();
  };
  EXPECT_TRUE(parse(std::string("\x01\x02", 2)).ok());
  // A varint of six bytes, and a five-byte one beyond 2^32 - 1.
  EXPECT_TRUE(absl::IsInvalidArgument(parse(std::string("\xff\xff\xff\xff\xff\x01\x01", 7))));
  EXPECT_TRUE(absl::IsInvalidArgument(parse(std::string("\xff\xff\xff\xff\x1f\x01", 6))));
  // Two gaps, each below 2^32, whose sum is not.
  absl::Status wraps = parse(std::string("\xff\xff\xff\xff\x0f\x01", 6));
  EXPECT_TRUE(absl::IsInvalidArgument(wraps)) << wraps;
  EXPECT_NE(wraps.message().find("index 1"), absl::string_view::npos) << wraps;
  // In range for the varints but not for the module: fl::Decompress refuses it.
  absl::StatusOr<fl::CompressedValues> outside =
      ParseCompressedPayload(two_of_four, 4, std::string("\x01\x07", 2) + std::string(6, '\0'));
  ASSERT_TRUE(outside.ok());
  std::vector<float> out(4);
  EXPECT_TRUE(absl::IsInvalidArgument(fl::Decompress(*outside, absl::MakeSpan(out))));
}

// ---- The update codec with compressed modules ----

fl::ModuleUpdate Module(const std::string& name, std::vector<fl::TensorSpec> layout, size_t size,
                        uint32_t seed, absl::string_view codec) {
  fl::ModuleUpdate m;
  m.name = name;
  m.base_version = 2;
  m.layout = std::move(layout);
  m.values = RandomDelta(size, seed);
  const fl::CompressionSpec spec = Spec(codec);
  if (spec.compresses()) {
    m.compressed = fl::Compress(m.values, spec);
    m.values = Decoded(*m.compressed);  // what the device folds, as DeviceSession does
  }
  return m;
}

// Two modules of a pool of three: a compressed head, a float32 SSF, a compressed LoRA.
fl::LocalUpdate MixedUpdate(absl::string_view head_codec, absl::string_view lora_codec) {
  fl::LocalUpdate update;
  update.num_samples = 64;
  update.local_steps = 4;
  update.loss = 0.5;
  update.modules.push_back(Module("head", {{"w", {10, 30}}, {"b", {10}}}, 310, 11, head_codec));
  update.modules.push_back(Module("ssf", {{"g", {30}}}, 30, 12, "float32"));
  update.modules.push_back(Module("lora", {{"a", {4, 600}}}, 2400, 13, lora_codec));
  return update;
}

std::vector<fl::ModuleSnapshot> MixedPool() {
  const fl::LocalUpdate update = MixedUpdate("float32", "float32");
  std::vector<fl::ModuleSnapshot> pool(update.modules.size());
  for (size_t i = 0; i < pool.size(); ++i) {
    auto values = std::make_shared<nn::ParameterSet>(update.modules[i].name);
    for (const fl::TensorSpec& t : update.modules[i].layout) values->Add(t.name, t.shape, true);
    pool[i].spec.name = update.modules[i].name;
    pool[i].values = values;
  }
  return pool;
}

TEST(CompressedUpdateCodecTest, TheServerDecodesExactlyTheValuesTheDeviceFolded) {
  for (const auto& [head, lora] :
       {std::pair{"int8:64", "topk:0.05:64"}, std::pair{"float16", "float32"},
        std::pair{"topk:0.01:8", "int8:4096"}}) {
    SCOPED_TRACE(testing::Message() << head << " / " << lora);
    const fl::LocalUpdate sent = MixedUpdate(head, lora);
    v1::UpdateHeader header;
    std::string data = "stale bytes of an earlier encoding";
    ASSERT_TRUE(EncodeUpdate(5, 9, sent, &header, &data).ok());
    int64_t expected_bytes = 0;
    for (const fl::ModuleUpdate& m : sent.modules) expected_bytes += m.upload_bytes();
    EXPECT_EQ(static_cast<int64_t>(data.size()), expected_bytes) << "the bytes the device counts";
    EXPECT_EQ(header.total_bytes(), expected_bytes);
    EXPECT_EQ(header.crc32(), base::Crc32(data));
    EXPECT_EQ(header.modules(0).compression(), fl::CompressionSpecText(Spec(head)));
    EXPECT_EQ(header.modules(1).compression(), "");
    EXPECT_EQ(header.modules(1).payload_bytes(), 0);

    absl::StatusOr<UpdateLayout> layout = DecodeUpdateHeader(header, MixedPool());
    ASSERT_TRUE(layout.ok()) << layout.status();
    EXPECT_TRUE(layout->compressed);
    EXPECT_EQ(layout->total_values, 310 + 30 + 2400);
    EXPECT_EQ(layout->total_bytes, expected_bytes);
    std::vector<float> values(static_cast<size_t>(layout->total_values), -1.0f);
    ASSERT_TRUE(DecodeUpdatePayload(*layout, data, absl::MakeSpan(values)).ok());
    const fl::UpdateSubmission got = SubmissionFromHeader(header, *layout, absl::MakeSpan(values));
    ASSERT_EQ(got.modules.size(), 3u);
    for (size_t m = 0; m < 3; ++m) {
      ASSERT_EQ(got.modules[m].values.size(), sent.modules[m].values.size());
      EXPECT_EQ(0, std::memcmp(got.modules[m].values.data(), sent.modules[m].values.data(),
                               sent.modules[m].values.size() * sizeof(float)))
          << sent.modules[m].name << " differs from what the device folded";
    }
  }
}

TEST(CompressedUpdateCodecTest, HeadersDeclaringWhatNoCodecSendsAreRefusedNamingTheModule) {
  v1::UpdateHeader good;
  std::string data;
  ASSERT_TRUE(EncodeUpdate(5, 9, MixedUpdate("int8:64", "topk:0.05:64"), &good, &data).ok());
  auto refused = [&](const std::function<void(v1::UpdateHeader&)>& change) {
    v1::UpdateHeader header = good;
    change(header);
    return DecodeUpdateHeader(header, MixedPool()).status();
  };
  auto expect = [](const absl::Status& status, absl::string_view part) {
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
    EXPECT_NE(status.message().find(part), absl::string_view::npos) << status;
    EXPECT_LT(status.message().size(), 400u) << "echoes stay short";
  };
  expect(refused([](v1::UpdateHeader& h) { h.mutable_modules(0)->set_compression("int9"); }),
         "modules[0]");
  expect(refused([](v1::UpdateHeader& h) {
           h.mutable_modules(2)->set_compression(std::string(40000, 'k'));
         }),
         "modules[2]");
  // int8 of 310 values in blocks of 64: 310 + 4·5 bytes exactly.
  expect(refused([](v1::UpdateHeader& h) { h.mutable_modules(0)->set_payload_bytes(331); }),
         "modules[0]: payload_bytes is 331; int8:64 of 310 values takes 330");
  // top-k: 120 of 2400 values, 2 scales; a gap takes 1 byte, or 2 (the largest index, 2399, is a
  // 2-byte varint): 248 to 368 bytes.
  expect(refused([](v1::UpdateHeader& h) { h.mutable_modules(2)->set_payload_bytes(247); }),
         "modules[2]: payload_bytes is 247");
  expect(refused([](v1::UpdateHeader& h) { h.mutable_modules(2)->set_payload_bytes(369); }),
         "of 2400 values takes 248 to 368");
  expect(refused([](v1::UpdateHeader& h) {
           h.mutable_modules(2)->set_payload_bytes(int64_t{1} << 62);
         }),
         "modules[2]");
  expect(refused([](v1::UpdateHeader& h) { h.mutable_modules(1)->set_payload_bytes(8); }),
         "modules[1]: payload_bytes is 8; 30 float32 values take 120");
  expect(refused([](v1::UpdateHeader& h) { h.set_total_bytes(h.total_bytes() + 1); }),
         "total_bytes");
  // A float32 module may state its size; the server's work can be ignored for any valid codec.
  EXPECT_TRUE(
      refused([](v1::UpdateHeader& h) { h.mutable_modules(1)->set_payload_bytes(120); }).ok());
}

TEST(CompressedUpdateCodecTest, APayloadThatDoesNotDecodeIsRefusedNamingItsModule) {
  v1::UpdateHeader header;
  std::string data;
  const fl::LocalUpdate sent = MixedUpdate("int8:64", "topk:0.05:64");
  ASSERT_TRUE(EncodeUpdate(5, 9, sent, &header, &data).ok());
  absl::StatusOr<UpdateLayout> layout = DecodeUpdateHeader(header, MixedPool());
  ASSERT_TRUE(layout.ok()) << layout.status();
  std::vector<float> values(static_cast<size_t>(layout->total_values));
  auto decode = [&](std::string bytes) {
    return DecodeUpdatePayload(*layout, bytes, absl::MakeSpan(values));
  };
  // The head's first scale becomes NaN.
  std::string nan_scale = data;
  const float nan = std::nanf("");
  std::memcpy(nan_scale.data(), &nan, sizeof(nan));
  absl::Status status = decode(nan_scale);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_NE(status.message().find("modules[0]"), absl::string_view::npos) << status;
  // The LoRA's second gap becomes 0: an index repeats.
  const size_t lora_at = static_cast<size_t>(layout->payload_bytes[0] + layout->payload_bytes[1]);
  std::string repeated = data;
  size_t second_gap = lora_at;
  while (static_cast<uint8_t>(repeated[second_gap]) & 0x80) ++second_gap;
  ++second_gap;
  ASSERT_EQ(static_cast<uint8_t>(repeated[second_gap]) & 0x80, 0) << "a one-byte gap to zero";
  repeated[second_gap] = 0;
  status = decode(repeated);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_NE(status.message().find("modules[2]"), absl::string_view::npos) << status;
  // Bytes of another size than the layout's.
  EXPECT_TRUE(absl::IsInvalidArgument(decode(data.substr(1))));
  EXPECT_TRUE(decode(data).ok());
}

}  // namespace
}  // namespace fedcl::proto
