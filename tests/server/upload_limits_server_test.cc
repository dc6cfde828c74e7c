// The upload slots' deadlines and per-client share through a real FederationServer on 127.0.0.1:0,
// on a ManualClock: stalled uploads hold every slot and an honest upload waits, exactly until the
// test moves the clock past the idle deadline. Nothing here depends on how fast the machine is:
// every wait is for a state the server must reach, bounded by a generous deadline.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/base/clock.h"
#include "core/base/crc32.h"
#include "core/base/log.h"
#include "core/nn/model.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "proto/federation_convert.h"
#include "server/federation_server.h"
#include "server/server_config.h"

namespace fedcl::server {
namespace {

std::string TokenOf(int client) { return absl::StrCat("upload-limits-token-of-client-", client); }

// Waits (polling) until `done` holds, at most 20 s; false if it never did.
template <typename Predicate>
bool Eventually(Predicate done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// One SubmitUpdate stream of the head module, driven step by step.
class Upload {
 public:
  Upload(v1::Federation::Stub& stub, int client, const std::vector<fl::TensorSpec>& layout,
         float fill) {
    int64_t size = 0;
    for (const fl::TensorSpec& t : layout) size += nn::NumElements(t.shape);
    const std::vector<float> values(size, fill);
    data_.assign(reinterpret_cast<const char*>(values.data()), size * sizeof(float));
    context_.AddMetadata("authorization", "Bearer " + TokenOf(client));
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    writer_ = stub.SubmitUpdate(&context_, &response_);
    header_.mutable_header()->set_client_id(client);
    header_.mutable_header()->set_num_samples(8);
    header_.mutable_header()->set_local_steps(1);
    v1::ModuleDelta* delta = header_.mutable_header()->add_modules();
    delta->set_name("head");
    proto::LayoutToProto(layout, delta->mutable_layout());
    header_.mutable_header()->set_total_bytes(static_cast<int64_t>(data_.size()));
    header_.mutable_header()->set_crc32(base::Crc32(data_));
  }
  // The header and the first `bytes` bytes of data, then nothing (the stream stays open).
  bool SendPart(size_t bytes) {
    if (!writer_->Write(header_)) return false;
    v1::UpdateChunk chunk;
    chunk.set_data(data_.substr(0, bytes));
    return bytes == 0 || writer_->Write(chunk);
  }
  // Everything, then the half-close and the server's status.
  grpc::Status SendAll() {
    if (SendPart(data_.size())) writer_->WritesDone();
    return writer_->Finish();
  }
  // The server's status for a stream left open (it ends it).
  grpc::Status Finish() { return writer_->Finish(); }
  size_t size() const { return data_.size(); }

 private:
  std::string data_;
  grpc::ClientContext context_;
  v1::SubmitUpdateResponse response_;
  v1::UpdateChunk header_;
  std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer_;
};

class UploadLimitsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_upload_limits_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    nn::ModelConfig config;  // a tiny MLP: what is served does not matter here
    config.backbone = nn::BackboneKind::kMlp;
    config.image_height = config.image_width = 8;
    config.mlp.hidden = {10};
    config.num_classes = 4;
    auto model = nn::Model::Create(config, 1);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE(proto::SaveCheckpoint(fs_, Path("mlp.ckpt"), **model, {}, {}).ok());
    std::string tokens;
    for (int id = 1; id <= 4; ++id) {
      absl::StrAppend(&tokens, "client ", id, " sha256:", proto::Sha256Hex(TokenOf(id)), "\n");
    }
    ASSERT_TRUE(fs_.WriteFileAtomically(Path("tokens"), tokens).ok());
    const std::string text = absl::StrFormat(
        R"pb(
          state_dir: "%s"
          backbone_checkpoint: "%s"
          tokens_file: "%s"
          module { name: "head" role: "head" }
          round { duration_ms: 600000 max_participants: 3 }
          limits { max_concurrent_uploads: 2 upload_idle_timeout_ms: 80 upload_timeout_ms: 1000 }
          journal { sync: "normal" }
        )pb",
        Path("state"), Path("mlp.ckpt"), Path("tokens"));
    absl::StatusOr<v1::ServerConfig> parsed = ParseServerConfig(text, "upload limits test");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    auto started =
        FederationServer::Start(*parsed, "127.0.0.1:0", fs_, clock_, base::LogSink::Null());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    stub_ = v1::Federation::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    for (int id = 1; id <= 4; ++id) {
      grpc::ClientContext context;
      context.AddMetadata("authorization", "Bearer " + TokenOf(id));
      v1::JoinRequest join;
      join.set_client_id(id);
      v1::JoinResponse joined;
      ASSERT_TRUE(stub_->Join(&context, join, &joined).ok());
    }
    for (const fl::ModuleSnapshot& m : server_->coordinator().Modules()) {
      for (int t = 0; t < m.values->num_tensors(); ++t) {
        layout_.push_back({m.values->info(t).name, m.values->info(t).shape});
      }
    }
  }
  void TearDown() override {
    server_->Shutdown();
    EXPECT_TRUE(server_->Wait().ok());
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string Path(absl::string_view name) const { return absl::StrCat(dir_, "/", name); }

  base::FileSystem& fs_ = base::FileSystem::Default();
  base::ManualClock clock_{absl::Now()};
  std::string dir_;
  std::unique_ptr<FederationServer> server_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  std::vector<fl::TensorSpec> layout_;
};

TEST_F(UploadLimitsServerTest, StalledUploadsLoseTheirSlotsAtTheIdleDeadlineAndAnHonestOneLands) {
  Upload stalled1(*stub_, 1, layout_, 0.1f), stalled2(*stub_, 2, layout_, 0.1f);
  ASSERT_TRUE(stalled1.SendPart(stalled1.size() / 2));
  ASSERT_TRUE(stalled2.SendPart(0));  // abandoned right after its header
  ASSERT_TRUE(Eventually([&] { return server_->upload_slots().in_use() == 2; }));

  // Client 1 already has its share (one upload): a second is refused at once.
  Upload second(*stub_, 1, layout_, 0.1f);
  EXPECT_EQ(second.SendAll().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  absl::Notification honest_done;
  grpc::Status honest_status;
  std::thread honest([&] {
    Upload upload(*stub_, 3, layout_, 0.3f);
    honest_status = upload.SendAll();
    honest_done.Notify();
  });
  ASSERT_TRUE(Eventually([&] { return server_->upload_slots().waiting() == 1; }));
  // However long the machine takes, nothing moves until the clock does.
  EXPECT_FALSE(honest_done.WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  EXPECT_EQ(server_->upload_slots().in_use(), 2);

  clock_.Advance(absl::Milliseconds(80));
  ASSERT_TRUE(honest_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  honest.join();
  EXPECT_TRUE(honest_status.ok()) << honest_status.error_message();
  for (Upload* stalled : {&stalled1, &stalled2}) {
    const grpc::Status status = stalled->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
    EXPECT_NE(status.error_message().find("upload_idle_timeout_ms"), std::string::npos);
  }
  EXPECT_TRUE(Eventually([&] { return server_->upload_slots().in_use() == 0; }));

  // The stalled clients send their updates properly now: the round (quota 3) closes.
  EXPECT_TRUE(Upload(*stub_, 1, layout_, 0.1f).SendAll().ok());
  EXPECT_TRUE(Upload(*stub_, 2, layout_, 0.2f).SendAll().ok());
  EXPECT_EQ(server_->coordinator().current_round(), 1);
}

// A holder past its total deadline loses the slot even though it is not idle.
TEST_F(UploadLimitsServerTest, AnUploadPastItsTotalDeadlineIsEndedWhateverItSends) {
  Upload slow(*stub_, 1, layout_, 0.1f);
  ASSERT_TRUE(slow.SendPart(4));
  ASSERT_TRUE(Eventually([&] { return server_->upload_slots().in_use() == 1; }));
  clock_.Advance(absl::Milliseconds(1000));
  const grpc::Status status = slow.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_NE(status.error_message().find("upload_timeout_ms"), std::string::npos);
  EXPECT_TRUE(Eventually([&] { return server_->upload_slots().in_use() == 0; }));
}

}  // namespace
}  // namespace fedcl::server
