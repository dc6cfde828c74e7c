// Resumable downloads (issue 18, item 5): a device's GrpcPort downloads the backbone and a module
// from a real fedcl-server through LossyLinkProxy, which cuts the connection once a stream has
// brought a given number of bytes, wherever that falls in a chunk. The port keeps the chunks that
// arrived whole and verified (each carries its CRC-32), and asks for the rest from there: the
// payload arrives exactly, and the stream that finishes it carries only the rest.
//
// Deterministic: the proxy cuts by byte count, not by time, and closes the connection rather
// than resetting it, so that what it relayed stays readable (lossy_link_proxy.h); every call has
// a 5 s deadline.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/grpc_port.h"
#include "tests/integration/lossy_link_proxy.h"
#include "tests/integration/server_fixture.h"

namespace fedcl::testing {
namespace {

// An MLP over 8×8 images with 6000 hidden units: a backbone of about 1.7 MB and a head of
// 6001 × 8 floats (192 KB), sent in chunks of 16 KiB.
constexpr int kHidden = 6000, kClasses = 8;
constexpr int64_t kChunkBytes = 16 << 10;
// Per chunk, the link carries a little more than its data: gRPC's 5-byte message prefix, the
// Chunk message's other fields, and the HTTP/2 frames a chunk spans (whose headers are not DATA).
constexpr int64_t kChunkOverheadBytes = 64;
// Never an upload here: the proxy drops no reply.
constexpr int64_t kNoUpload = int64_t{1} << 40;

class ResumableDownloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SaveMlpBackbone(f_.dir() + "/backbone_big.ckpt", kHidden, kClasses);
    ASSERT_FALSE(HasFatalFailure());
    const std::string& d = f_.dir();
    f_.WriteRawConfig(absl::StrCat(
        "state_dir: \"", d, "/state\"\n", "backbone_checkpoint: \"", d, "/backbone_big.ckpt\"\n",
        "num_classes: ", kClasses, "\n", "tokens_file: \"", d, "/tokens.txt\"\n",
        "module { name: \"head\" role: \"head\" }\n", "limits { chunk_bytes: ", kChunkBytes, " }\n",
        "round { duration_ms: 86400000 max_participants: 2 }\n"));
    f_.StartServer();
    ASSERT_FALSE(HasFatalFailure());
    auto proxy = LossyLinkProxy::Start(Port(f_.address()), kNoUpload);
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
    // What the server serves, fetched over a clean link.
    std::unique_ptr<proto::GrpcPort> direct = MakePort(f_.address(), 4);
    ASSERT_NE(direct, nullptr);
    auto backbone = direct->DownloadBackbone(1);
    ASSERT_TRUE(backbone.ok()) << backbone.status();
    backbone_ = *std::move(backbone);
    auto head = direct->DownloadModule(1, "head", 0);
    ASSERT_TRUE(head.ok()) << head.status();
    head_ =
        std::vector<float>(head->values.flat_values().begin(), head->values.flat_values().end());
    ASSERT_GT(backbone_.size(), 1500000u);
    ASSERT_EQ(head_.size(), size_t{(kHidden + 1) * kClasses});
  }

  static int Port(const std::string& address) {
    return std::stoi(address.substr(address.rfind(':') + 1));
  }

  std::unique_ptr<proto::GrpcPort> MakePort(const std::string& target, int download_streams,
                                            const std::string& partial_downloads_dir = "") {
    proto::GrpcPortOptions options;
    options.partial_downloads_dir = partial_downloads_dir;
    options.target = target;
    options.token = f_.token(1);
    options.call_timeout = absl::Seconds(5);
    options.reconnect_backoff_initial = absl::Milliseconds(20);
    options.reconnect_backoff_max = absl::Milliseconds(100);
    options.download_streams = download_streams;
    auto port = proto::GrpcPort::Create(options, base::FileSystem::Default());
    EXPECT_TRUE(port.ok()) << port.status();
    if (!port.ok()) return nullptr;
    auto joined = (*port)->Join(1, "resumable-download-test");
    EXPECT_TRUE(joined.ok()) << joined.status();
    return *std::move(port);
  }

  ServerFixture f_;
  std::unique_ptr<LossyLinkProxy> proxy_;
  std::string backbone_;
  std::vector<float> head_;
};

// Downloads `name` ("backbone" or a module) through `port`, calling again as a device's next sync
// would while a call fails (at most 5 calls: the proxy's cuts run out before).
absl::StatusOr<std::string> DownloadAsADeviceWould(proto::GrpcPort& port, const std::string& name) {
  absl::Status last;
  for (int call = 0; call < 5; ++call) {
    if (name == "backbone") {
      auto bytes = port.DownloadBackbone(1);
      if (bytes.ok() || !absl::IsUnavailable(bytes.status())) return bytes;
      last = bytes.status();
    } else {
      auto module = port.DownloadModule(1, name, 0);
      if (module.ok()) {
        const auto values = module->values.flat_values();
        return std::string(reinterpret_cast<const char*>(values.data()),
                           values.size() * sizeof(float));
      }
      if (!absl::IsUnavailable(module.status())) return module.status();
      last = module.status();
    }
  }
  return last;
}

// Whether the stream that finished the download carried the rest of `payload_bytes` from the port's
// last resume offset and no more (its chunks' framing aside): the server resumed where the verified
// chunks ended.
void ExpectTheLastStreamCarriedOnlyTheRest(const proto::GrpcPort& port, const LossyLinkProxy& proxy,
                                           int64_t payload_bytes) {
  const int64_t offset = port.download_stats().last_resume_offset;
  const int64_t rest = payload_bytes - offset;
  EXPECT_GE(proxy.last_stream_data_bytes(), rest);
  EXPECT_LE(proxy.last_stream_data_bytes(), rest + (rest / kChunkBytes + 1) * kChunkOverheadBytes);
}

TEST_F(ResumableDownloadTest, ACutDownloadResumesFromItsLastVerifiedChunk) {
  std::unique_ptr<proto::GrpcPort> port = MakePort(proxy_->address(), 4);
  ASSERT_NE(port, nullptr);

  // The backbone, cut three times, each time 384 KiB into a stream.
  proxy_->CutNextDownloads(3, 384 << 10);
  const int64_t before = proxy_->server_data_bytes();
  auto backbone = DownloadAsADeviceWould(*port, "backbone");
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  EXPECT_TRUE(*backbone == backbone_) << "the payload arrives exactly";
  EXPECT_EQ(proxy_->downloads_cut(), 3);
  EXPECT_EQ(port->download_stats().resumed_streams, 3) << "each cut stream was resumed";
  const int64_t size = static_cast<int64_t>(backbone_.size());
  ExpectTheLastStreamCarriedOnlyTheRest(*port, *proxy_, size);
  // Each cut wastes at most the chunk it cut through: starting over would waste 384 KiB.
  const int64_t carried = proxy_->server_data_bytes() - before;
  EXPECT_LE(carried, size + 3 * kChunkBytes + (size / kChunkBytes + 4) * kChunkOverheadBytes);
  std::printf(
      "backbone of %lld bytes, 3 cuts at 384 KiB: %lld resumed streams, %lld bytes not "
      "fetched again, %lld carried in all (starting over: %lld)\n",
      static_cast<long long>(size), static_cast<long long>(port->download_stats().resumed_streams),
      static_cast<long long>(port->download_stats().resumed_bytes), static_cast<long long>(carried),
      static_cast<long long>(size + 3 * (384 << 10)));

  // A module the same way, cut three times 48 KiB into a stream: its values arrive exactly, and
  // the link carries about the module once.
  const int64_t resumed = port->download_stats().resumed_streams;
  proxy_->CutNextDownloads(3, 48 << 10);
  const int64_t module_before = proxy_->server_data_bytes();
  auto head = DownloadAsADeviceWould(*port, "head");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(*head,
            std::string(reinterpret_cast<const char*>(head_.data()), head_.size() * sizeof(float)));
  EXPECT_EQ(proxy_->downloads_cut(), 6);
  EXPECT_EQ(port->download_stats().resumed_streams, resumed + 3);
  const int64_t module_carried = proxy_->server_data_bytes() - module_before;
  const int64_t module_bytes = static_cast<int64_t>(head_.size() * sizeof(float));
  EXPECT_LE(module_carried, module_bytes + 1024 + 3 * kChunkBytes +
                                (module_bytes / kChunkBytes + 4) * kChunkOverheadBytes);
  std::printf(
      "module head of %lld bytes of values, 3 cuts at 48 KiB: %lld carried in all "
      "(starting over: %lld)\n",
      static_cast<long long>(module_bytes), static_cast<long long>(module_carried),
      static_cast<long long>(module_bytes + 3 * (48 << 10)));
}

// A call whose streams are all spent keeps what it verified; the next call for the same payload
// resumes from there instead of starting over.
TEST_F(ResumableDownloadTest, APartialDownloadOutlivesTheCallThatWasCut) {
  std::unique_ptr<proto::GrpcPort> port = MakePort(proxy_->address(), /*download_streams=*/1);
  ASSERT_NE(port, nullptr);
  proxy_->CutNextDownloads(2, 512 << 10);
  auto cut = port->DownloadBackbone(1);
  EXPECT_TRUE(absl::IsUnavailable(cut.status())) << cut.status();
  auto backbone = DownloadAsADeviceWould(*port, "backbone");
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  EXPECT_TRUE(*backbone == backbone_);
  EXPECT_EQ(proxy_->downloads_cut(), 2);
  EXPECT_EQ(port->download_stats().resumed_streams, 2) << "each later call resumed";
  ExpectTheLastStreamCarriedOnlyTheRest(*port, *proxy_, static_cast<int64_t>(backbone_.size()));
}

// A device killed after a cut (its port gone with what it held in memory) resumes in its next
// process from the chunks the first one kept on disk, and keeps nothing once the download is done.
TEST_F(ResumableDownloadTest, ADownloadCutShortResumesInTheNextProcess) {
  const std::string kept_dir = f_.dir() + "/device/downloads";
  int64_t verified_before_the_kill = 0;
  {
    std::unique_ptr<proto::GrpcPort> first = MakePort(proxy_->address(), 1, kept_dir);
    ASSERT_NE(first, nullptr);
    proxy_->CutNextDownloads(1, 640 << 10);
    auto cut = first->DownloadBackbone(1);
    EXPECT_TRUE(absl::IsUnavailable(cut.status())) << cut.status();
    EXPECT_EQ(proxy_->downloads_cut(), 1);
    auto listed = base::FileSystem::Default().ListDirectory(kept_dir);
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->size(), 2u) << "the kept bytes and their record";
    for (const std::string& file : *listed) {
      if (absl::EndsWith(file, ".part")) {
        verified_before_the_kill = static_cast<int64_t>(
            base::FileSystem::Default().ReadFile(kept_dir + "/" + file)->size());
      }
    }
  }
  // The cut fell 640 KiB into the stream: every whole chunk before it was kept.
  EXPECT_GT(verified_before_the_kill, (640 << 10) - 2 * kChunkBytes);
  EXPECT_LE(verified_before_the_kill, 640 << 10);

  std::unique_ptr<proto::GrpcPort> second = MakePort(proxy_->address(), 1, kept_dir);
  ASSERT_NE(second, nullptr);
  auto backbone = second->DownloadBackbone(1);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  EXPECT_TRUE(*backbone == backbone_) << "the payload arrives exactly";
  EXPECT_EQ(second->download_stats().restored_partials, 1);
  EXPECT_EQ(second->download_stats().resumed_streams, 1);
  EXPECT_EQ(second->download_stats().last_resume_offset, verified_before_the_kill);
  ExpectTheLastStreamCarriedOnlyTheRest(*second, *proxy_, static_cast<int64_t>(backbone_.size()));
  auto left = base::FileSystem::Default().ListDirectory(kept_dir);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->empty()) << "a finished download keeps nothing";
  std::printf("a new process resumed the backbone at byte %lld of %lld\n",
              static_cast<long long>(verified_before_the_kill),
              static_cast<long long>(backbone_.size()));
}

// The server refuses a resumption past the payload's end, naming it.
TEST_F(ResumableDownloadTest, AnOffsetPastThePayloadIsOutOfRange) {
  auto channel = grpc::CreateChannel(f_.address(), grpc::InsecureChannelCredentials());
  auto stub = v1::Federation::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + f_.token(1));
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::DownloadBackboneRequest request;
  request.set_client_id(1);
  request.set_offset(static_cast<int64_t>(backbone_.size()) + 1);
  auto reader = stub->DownloadBackbone(&context, request);
  v1::Chunk chunk;
  int chunks = 0;
  while (reader->Read(&chunk)) ++chunks;
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(chunks, 0);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << status.error_message();
  EXPECT_NE(status.error_message().find("outside the"), std::string::npos);
}

}  // namespace
}  // namespace fedcl::testing
