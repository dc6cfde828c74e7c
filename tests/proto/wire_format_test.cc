#include "proto/wire_format.h"

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/base/crc32.h"
#include "gtest/gtest.h"
#include "proto/chunks.h"
#include "proto/federation_convert.h"
#include "proto/tensor_convert.h"
#include "proto/update_codec.h"

namespace fedcl::proto {
namespace {

std::string Payload(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return bytes;
}

// The chunks the server sends for `payload`, `chunk_bytes` each.
std::vector<v1::Chunk> Chunks(const std::string& payload, size_t chunk_bytes) {
  std::vector<v1::Chunk> chunks;
  ChunkSplitter splitter(payload, base::Crc32(payload), static_cast<int64_t>(chunk_bytes));
  v1::Chunk chunk;
  while (splitter.Next(&chunk)) chunks.push_back(chunk);
  return chunks;
}

absl::StatusOr<std::string> Assemble(const std::vector<v1::Chunk>& chunks, int64_t max = 1 << 20) {
  ChunkAssembler assembler("test payload", max);
  for (const v1::Chunk& chunk : chunks) {
    absl::Status status = assembler.Add(chunk);
    if (!status.ok()) return status;
  }
  return assembler.Finish();
}

TEST(ChunkAssemblerTest, ChunksInOrderReassembleThePayload) {
  const std::string payload = Payload(10000);
  absl::StatusOr<std::string> bytes = Assemble(Chunks(payload, 1024));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, payload);
}

// Only the first chunk announces the size and CRC; the others continue where the last ended.
TEST(ChunkSplitterTest, FirstChunkAnnouncesTheWholeAndTheRestFollowOn) {
  const std::string payload = Payload(2500);
  const std::vector<v1::Chunk> chunks = Chunks(payload, 1000);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].total_bytes(), 2500);
  EXPECT_EQ(chunks[0].crc32(), base::Crc32(payload));
  EXPECT_EQ(chunks[1].offset(), 1000);
  EXPECT_EQ(chunks[1].total_bytes(), 0);
  EXPECT_EQ(chunks[2].offset(), 2000);
  EXPECT_EQ(chunks[2].data().size(), 500u);
  EXPECT_EQ(Chunks("", 1000).size(), 1u);
  EXPECT_EQ(Chunks(Payload(3000), 1000).size(), 3u) << "no empty chunk after an exact fit";
}

TEST(ChunkAssemblerTest, EmptyPayloadIsOneEmptyChunk) {
  absl::StatusOr<std::string> bytes = Assemble(Chunks("", 1024));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_TRUE(bytes->empty());
}

TEST(ChunkAssemblerTest, BadCrcIsDataLoss) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  (*chunks[2].mutable_data())[10] ^= 0x01;  // one flipped bit in transit
  absl::StatusOr<std::string> bytes = Assemble(chunks);
  EXPECT_TRUE(absl::IsDataLoss(bytes.status())) << bytes.status();
  EXPECT_NE(bytes.status().message().find("the chunk at offset 2048 is damaged"), std::string::npos)
      << bytes.status();
  // Damage that the chunk's own CRC misses (it was computed after): the payload's catches it.
  chunks[2].set_chunk_crc32(base::Crc32(chunks[2].data()));
  bytes = Assemble(chunks);
  EXPECT_TRUE(absl::IsDataLoss(bytes.status())) << bytes.status();
  EXPECT_NE(bytes.status().message().find("is damaged: CRC-32 announced"), std::string::npos)
      << bytes.status();
}

TEST(ChunkAssemblerTest, GapIsDataLoss) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  chunks.erase(chunks.begin() + 2);
  absl::StatusOr<std::string> bytes = Assemble(chunks);
  EXPECT_TRUE(absl::IsDataLoss(bytes.status())) << bytes.status();
  EXPECT_NE(bytes.status().message().find("gap"), std::string::npos);
}

TEST(ChunkAssemblerTest, OverlapIsDataLoss) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  chunks.insert(chunks.begin() + 2, chunks[1]);
  absl::StatusOr<std::string> bytes = Assemble(chunks);
  EXPECT_TRUE(absl::IsDataLoss(bytes.status())) << bytes.status();
  EXPECT_NE(bytes.status().message().find("overlap"), std::string::npos);
}

TEST(ChunkAssemblerTest, TruncatedStreamIsDataLoss) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  chunks.pop_back();
  absl::StatusOr<std::string> bytes = Assemble(chunks);
  EXPECT_TRUE(absl::IsDataLoss(bytes.status())) << bytes.status();
}

TEST(ChunkAssemblerTest, MoreDataThanAnnouncedIsDataLoss) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  chunks[0].set_total_bytes(3000);
  absl::StatusOr<std::string> bytes = Assemble(chunks);
  EXPECT_TRUE(absl::IsDataLoss(bytes.status())) << bytes.status();
}

TEST(ChunkAssemblerTest, FirstChunkNotAtOffsetZeroIsDataLoss) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  chunks.erase(chunks.begin());
  EXPECT_TRUE(absl::IsDataLoss(Assemble(chunks).status()));
}

TEST(ChunkAssemblerTest, NoChunksIsDataLoss) {
  EXPECT_TRUE(absl::IsDataLoss(Assemble({}).status()));
}

TEST(ChunkAssemblerTest, PayloadAboveTheLimitIsRefusedBeforeItArrives) {
  std::vector<v1::Chunk> chunks = Chunks(Payload(5000), 1024);
  ChunkAssembler assembler("big", 4096);
  EXPECT_TRUE(absl::IsFailedPrecondition(assembler.Add(chunks[0])));
  EXPECT_EQ(assembler.received_bytes(), 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(assembler.Add(chunks[1]))) << "errors are sticky";
  EXPECT_TRUE(absl::IsFailedPrecondition(assembler.Finish().status()));
}

// A stream from an offset: its first chunk announces the whole payload, every chunk its own CRC.
TEST(ChunkSplitterTest, AResumedStreamStartsAtItsOffsetAndAnnouncesTheWhole) {
  const std::string payload = Payload(2500);
  ChunkSplitter splitter(payload, base::Crc32(payload), 1000, /*offset=*/1700);
  v1::Chunk chunk;
  ASSERT_TRUE(splitter.Next(&chunk));
  EXPECT_EQ(chunk.offset(), 1700);
  EXPECT_EQ(chunk.data(), payload.substr(1700, 800));
  EXPECT_EQ(chunk.total_bytes(), 2500);
  EXPECT_EQ(chunk.crc32(), base::Crc32(payload));
  EXPECT_EQ(chunk.chunk_crc32(), base::Crc32(chunk.data()));
  EXPECT_FALSE(splitter.Next(&chunk));
  ChunkSplitter at_end(payload, base::Crc32(payload), 1000, /*offset=*/2500);
  ASSERT_TRUE(at_end.Next(&chunk)) << "an empty rest is one empty chunk";
  EXPECT_TRUE(chunk.data().empty());
  EXPECT_EQ(chunk.total_bytes(), 2500);
}

// The verified chunks of a cut stream, then a stream from where they end: the payload, exactly.
TEST(ChunkAssemblerTest, AResumedStreamCompletesThePayload) {
  const std::string payload = Payload(10000);
  const std::vector<v1::Chunk> first = Chunks(payload, 1024);
  ChunkAssembler assembler("test payload", 1 << 20);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(assembler.Add(first[i]).ok());
  EXPECT_FALSE(assembler.complete());
  assembler.ResumeStream();
  ChunkSplitter rest(payload, base::Crc32(payload), 3000, assembler.received_bytes());
  v1::Chunk chunk;
  while (rest.Next(&chunk)) ASSERT_TRUE(assembler.Add(chunk).ok());
  EXPECT_TRUE(assembler.complete());
  absl::StatusOr<std::string> bytes = assembler.Finish();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, payload);
}

TEST(ChunkAssemblerTest, AResumedStreamOfAnotherPayloadOrOffsetIsDataLoss) {
  const std::string payload = Payload(10000);
  std::string changed = payload;
  changed[9000] ^= 0x40;  // the server's payload changed between the streams
  for (const auto& [other, from] : {std::pair{changed, int64_t{2048}},  // another payload
                                    std::pair{payload, int64_t{1024}},  // an overlap
                                    std::pair{payload, int64_t{3072}}}) {
    ChunkAssembler assembler("test payload", 1 << 20);
    const std::vector<v1::Chunk> first = Chunks(payload, 1024);
    ASSERT_TRUE(assembler.Add(first[0]).ok());
    ASSERT_TRUE(assembler.Add(first[1]).ok());
    assembler.ResumeStream();
    ChunkSplitter rest(other, base::Crc32(other), 1024, from);
    v1::Chunk chunk;
    ASSERT_TRUE(rest.Next(&chunk));
    const absl::Status status = assembler.Add(chunk);
    EXPECT_TRUE(absl::IsDataLoss(status)) << status;
    EXPECT_EQ(assembler.payload_changed(), other != payload) << status;
  }
}

fl::LocalUpdate TwoModuleUpdate() {
  fl::LocalUpdate update;
  update.num_samples = 80;
  update.local_steps = 5;
  update.loss = 1.25;
  update.modules.push_back({"head", 3, {{"w", {2, 3}}, {"b", {2}}}, {1, 2, 3, 4, 5, 6, 7, 8}});
  update.modules.push_back({"ssf", 2, {{"g", {3}}}, {-1.5f, 0.25f, 1e-7f}});
  return update;
}

TEST(EncodeUpdateTest, HeaderDescribesTheDataThatFollows) {
  v1::UpdateHeader header;
  std::string data;
  ASSERT_TRUE(EncodeUpdate(7, 12, TwoModuleUpdate(), &header, &data).ok());
  EXPECT_EQ(header.client_id(), 7u);
  EXPECT_EQ(header.round(), 12);
  EXPECT_EQ(header.num_samples(), 80);
  EXPECT_EQ(header.local_steps(), 5);
  EXPECT_DOUBLE_EQ(header.loss(), 1.25);
  ASSERT_EQ(header.modules_size(), 2);
  EXPECT_EQ(header.modules(0).name(), "head");
  EXPECT_EQ(header.modules(0).base_version(), 3);
  absl::StatusOr<std::vector<fl::TensorSpec>> layout =
      proto::LayoutFromProto(header.modules(0).layout());
  ASSERT_TRUE(layout.ok());
  ASSERT_EQ(layout->size(), 2u);
  EXPECT_EQ((*layout)[0].name, "w");
  EXPECT_EQ((*layout)[0].shape, (nn::Shape{2, 3}));
  EXPECT_TRUE(header.modules(1).layout().tensors(0).data().empty()) << "layouts carry no values";
  EXPECT_EQ(header.total_bytes(), 11 * 4);
  ASSERT_EQ(data.size(), 11u * 4u);
  EXPECT_EQ(header.crc32(), base::Crc32(data));
  float ninth;
  std::memcpy(&ninth, data.data() + 8 * 4, 4);  // little-endian host: bytes are the floats
  EXPECT_EQ(ninth, -1.5f);
}

TEST(EncodeUpdateTest, ValuesThatDoNotFitTheLayoutAreRefused) {
  fl::LocalUpdate update = TwoModuleUpdate();
  update.modules[1].values.pop_back();
  v1::UpdateHeader header;
  std::string data;
  EXPECT_TRUE(absl::IsInvalidArgument(EncodeUpdate(7, 12, update, &header, &data)));
  EXPECT_TRUE(absl::IsInvalidArgument(EncodeUpdate(7, 12, fl::LocalUpdate{}, &header, &data)));
}

// The modules a server pools that TwoModuleUpdate fits.
std::vector<fl::ModuleSnapshot> Pool() {
  std::vector<fl::ModuleSnapshot> pool(2);
  auto head = std::make_shared<nn::ParameterSet>("head");
  head->Add("w", {2, 3}, true);
  head->Add("b", {2}, true);
  auto ssf = std::make_shared<nn::ParameterSet>("ssf");
  ssf->Add("g", {3}, true);
  pool[0].spec.name = "head";
  pool[0].values = head;
  pool[1].spec.name = "ssf";
  pool[1].values = ssf;
  return pool;
}

// What the device encodes, the server decodes into the same submission.
TEST(UpdateCodecTest, TheServerDecodesWhatTheDeviceEncodes) {
  const fl::LocalUpdate sent = TwoModuleUpdate();
  v1::UpdateHeader header;
  std::string data;
  ASSERT_TRUE(EncodeUpdate(7, 12, sent, &header, &data).ok());
  absl::StatusOr<UpdateLayout> layout = DecodeUpdateHeader(header, Pool());
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->total_bytes, static_cast<int64_t>(data.size()));
  std::vector<float> values(data.size() / 4);
  std::memcpy(values.data(), data.data(), data.size());
  const fl::UpdateSubmission got = SubmissionFromHeader(header, *layout, absl::MakeSpan(values));
  EXPECT_EQ(got.client, 7u);
  EXPECT_EQ(got.round, 12);
  EXPECT_EQ(got.num_samples, sent.num_samples);
  EXPECT_EQ(got.local_steps, sent.local_steps);
  EXPECT_EQ(got.loss, sent.loss);
  ASSERT_EQ(got.modules.size(), 2u);
  for (size_t m = 0; m < 2; ++m) {
    EXPECT_EQ(got.modules[m].name, sent.modules[m].name);
    EXPECT_EQ(got.modules[m].base_version, sent.modules[m].base_version);
    EXPECT_EQ(std::vector<float>(got.modules[m].values.begin(), got.modules[m].values.end()),
              sent.modules[m].values);
  }
}

// A header the pool cannot take is refused before any byte, naming what is wrong.
TEST(UpdateCodecTest, HeadersThePoolCannotTakeAreRefusedNamingTheModule) {
  v1::UpdateHeader good;
  std::string data;
  ASSERT_TRUE(EncodeUpdate(7, 12, TwoModuleUpdate(), &good, &data).ok());
  auto refused = [&](const std::function<void(v1::UpdateHeader&)>& change) {
    v1::UpdateHeader header = good;
    change(header);
    return DecodeUpdateHeader(header, Pool()).status();
  };
  absl::Status status =
      refused([](v1::UpdateHeader& h) { h.set_total_bytes(h.total_bytes() - 4); });
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_NE(status.message().find("total_bytes"), absl::string_view::npos) << status;
  status = refused([](v1::UpdateHeader& h) { h.mutable_modules(1)->set_name("lora"); });
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_NE(status.message().find("modules[1]: no module named 'lora'"), absl::string_view::npos)
      << status;
  status = refused([](v1::UpdateHeader& h) { h.clear_modules(); });
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  status = refused([](v1::UpdateHeader& h) { h.set_num_samples(-1); });
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  // A shape whose element count overflows, with a total that wraps with it.
  status = refused([](v1::UpdateHeader& h) {
    auto* shape = h.mutable_modules(1)->mutable_layout()->mutable_tensors(0)->mutable_shape();
    shape->Clear();
    shape->Add(int64_t{1} << 32);
    shape->Add((int64_t{1} << 32) - 1);
    h.set_total_bytes(-4);
  });
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("modules[1]"), absl::string_view::npos) << status;
  // More values than the pool holds in all.
  status = refused([](v1::UpdateHeader& h) {
    auto* shape = h.mutable_modules(0)->mutable_layout()->mutable_tensors(0)->mutable_shape();
    shape->Set(0, 1000);
  });
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
}

// The server's raw reading of a data chunk finds the data where protobuf put it, and refuses
// anything but exactly one data field. An unterminated length ("\x12\x80" alone) was once read
// as an empty data field.
TEST(DataChunkOffsetTest, FindsTheDataProtobufWroteAndRefusesEverythingElse) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{16383}, size_t{16384},
                      size_t{1} << 20}) {
    v1::UpdateChunk chunk;
    chunk.set_data(std::string(size, 'x'));
    const std::string wire = chunk.SerializeAsString();
    absl::StatusOr<size_t> offset =
        DataChunkOffset(absl::string_view(wire).substr(0, kDataChunkPrefixBytes), wire.size());
    ASSERT_TRUE(offset.ok()) << size << ": " << offset.status();
    EXPECT_EQ(*offset, wire.size() - size) << size;
  }
  auto refused = [](absl::string_view bytes) {
    return absl::IsInvalidArgument(DataChunkOffset(bytes, bytes.size()).status());
  };
  EXPECT_TRUE(refused(""));
  EXPECT_TRUE(refused(absl::string_view("\x12\x80", 2))) << "an unterminated length";
  EXPECT_TRUE(refused(absl::string_view("\x12\x81\x80\x80", 4)));
  EXPECT_TRUE(refused(std::string("\x12") + std::string(10, '\xff') + "\x01"))
      << "a varint longer than 10 bytes";
  EXPECT_TRUE(refused(absl::string_view("\x0a\x01x", 3))) << "the header's field, not data";
  EXPECT_TRUE(refused(absl::string_view("\x12\x02x", 3))) << "a length beyond the chunk";
  EXPECT_TRUE(refused(absl::string_view("\x12\x01xy", 4))) << "bytes after the field";
}

TEST(WorkFromProtoTest, DecodesWhatTheServerEncodes) {
  fl::WorkAssignment work;
  work.action = fl::WorkAssignment::Action::kTrain;
  work.round = 4;
  work.deadline = absl::FromUnixMillis(1234567);
  work.recipe.local_steps = 3;
  work.recipe.learning_rate = 0.05f;
  fl::ModuleInfo ssf;
  ssf.spec = {"ssf", fl::ModuleRole::kPet, {}};
  ssf.version = 2;
  ssf.num_values = 44;
  ssf.download = true;
  ssf.upload = *fl::ParseCompressionSpec("topk:0.05:64");
  work.modules.push_back(ssf);
  work.modules.push_back({{"head", fl::ModuleRole::kHead, {}}, 3, 10, false});
  v1::GetWorkResponse message;
  proto::ToProto(work, &message);
  absl::StatusOr<fl::WorkAssignment> decoded = WorkFromProto(message);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->action, fl::WorkAssignment::Action::kTrain);
  EXPECT_EQ(decoded->round, 4);
  EXPECT_EQ(decoded->deadline, work.deadline);
  EXPECT_EQ(decoded->recipe.local_steps, 3);
  EXPECT_FLOAT_EQ(decoded->recipe.learning_rate, 0.05f);
  ASSERT_EQ(decoded->modules.size(), 2u);
  EXPECT_EQ(decoded->modules[0].spec.name, "ssf");
  EXPECT_EQ(decoded->modules[0].spec.role, fl::ModuleRole::kPet);
  EXPECT_EQ(decoded->modules[0].version, 2);
  EXPECT_TRUE(decoded->modules[0].download);
  EXPECT_EQ(decoded->modules[0].upload, ssf.upload) << "the codec the device is asked for";
  EXPECT_EQ(decoded->modules[1].spec.role, fl::ModuleRole::kHead);
  EXPECT_FALSE(decoded->modules[1].download);
  EXPECT_FALSE(decoded->modules[1].upload.compresses());

  message.mutable_modules(0)->set_upload_compression("int9");
  absl::Status bad_codec = WorkFromProto(message).status();
  EXPECT_TRUE(absl::IsInvalidArgument(bad_codec));
  EXPECT_NE(bad_codec.message().find("module 'ssf'"), absl::string_view::npos) << bad_codec;
  message.mutable_modules(0)->set_upload_compression("float16");

  message.set_action(v1::GetWorkResponse::ACTION_UNSPECIFIED);
  EXPECT_TRUE(absl::IsInvalidArgument(WorkFromProto(message).status()));
}

TEST(ParseModulePayloadTest, ChecksItIsTheModuleAskedFor) {
  v1::ModulePayload payload;
  proto::ToProto(fl::ModuleSpec{"head", fl::ModuleRole::kHead, {}}, payload.mutable_module());
  payload.mutable_module()->set_version(5);
  nn::ParameterSet values("head");
  values.Add("w", {2, 2}, true);
  values.flat_values().setConstant(0.5f);
  proto::ToProto(values, payload.mutable_parameters());
  const std::string bytes = payload.SerializeAsString();

  absl::StatusOr<device::DownloadedModule> module = ParseModulePayload(bytes, "head", 5);
  ASSERT_TRUE(module.ok()) << module.status();
  EXPECT_EQ(module->version, 5);
  EXPECT_EQ(module->values.num_values(), 4);
  EXPECT_EQ(module->values.flat_values()[3], 0.5f);

  EXPECT_TRUE(absl::IsInvalidArgument(ParseModulePayload(bytes, "head", 4).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParseModulePayload(bytes, "ssf", 5).status()));
  EXPECT_TRUE(absl::IsDataLoss(ParseModulePayload("\xff\xff\xff", "head", 5).status()));
}

}  // namespace
}  // namespace fedcl::proto
