// The growing pool through a real fedcl-server (FederationServer) on 127.0.0.1:0: ProposeModule
// with tokens, expert distribution in GetWork and DownloadModule (descriptor on request), the
// aggregate over an expert's holders, status and metrics fields, and a restart on the same state.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/base/crc32.h"
#include "core/base/log.h"
#include "core/cl/learner.h"
#include "core/fl/module_registry.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "proto/federation_convert.h"
#include "proto/tensor_convert.h"
#include "server/federation_server.h"
#include "server/server_config.h"

namespace fedcl::server {
namespace {

constexpr int kDim = 8, kBottleneck = 2;

std::string TokenOf(int client) { return absl::StrCat("pool-test-token-of-client-", client); }

// A proposal of client `client` for block 1: values `fill`, statistics N(mean, 1) per dimension.
v1::ProposeModuleRequest Proposal(int client, float mean, float fill) {
  fl::ModuleProposal p;
  p.client = client;
  p.block = 1;
  p.spec.role = fl::ModuleRole::kExpert;
  for (const fl::TensorSpec& t : fl::ExpertLayout(kDim, kBottleneck)) {
    p.values.Add(t.name, t.shape, true);
  }
  p.values.flat_values().setConstant(fill);
  p.descriptor.Add("prototype", {kDim}, false);
  p.descriptor.flat_values().setConstant(mean);
  p.statistics = {std::vector<float>(kDim, mean), std::vector<float>(kDim, 1.0f)};
  v1::ProposeModuleRequest request;
  proto::ToProto(p, &request);
  return request;
}

class ModulePoolServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_pool_server_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    nn::ModelConfig config;  // a tiny ViT: 8×8 images, 4 patches, width 8, 2 blocks
    config.image_height = config.image_width = 8;
    config.vit = {.patch = 4, .dim = kDim, .depth = 2, .heads = 2, .mlp_ratio = 2};
    config.num_classes = 4;
    auto model = nn::Model::Create(config, 1);
    ASSERT_TRUE(model.ok()) << model.status();
    ASSERT_TRUE(proto::SaveCheckpoint(fs_, Path("vit.ckpt"), **model, {}, {}).ok());
    std::string tokens;
    for (int id : {1, 2, 3}) {
      absl::StrAppend(&tokens, "client ", id, " sha256:", proto::Sha256Hex(TokenOf(id)), "\n");
    }
    ASSERT_TRUE(fs_.WriteFileAtomically(Path("tokens"), tokens).ok());
  }
  void TearDown() override {
    StopServer();
    std::filesystem::remove_all(dir_);
  }
  std::string Path(absl::string_view name) const { return absl::StrCat(dir_, "/", name); }

  void StartServer(absl::string_view sections = R"pb(
    module { name : "head" role : "head" }
    pool { expandable_blocks : 1 expert_bottleneck : 2 })pb") {
    const std::string text = absl::StrFormat(
        R"pb(
          state_dir: "%s"
          backbone_checkpoint: "%s"
          tokens_file: "%s" %s
          round { duration_ms: 600000 max_participants: 2 }
          journal { sync: "normal" }
        )pb",
        Path("state"), Path("vit.ckpt"), Path("tokens"), sections);
    absl::StatusOr<v1::ServerConfig> config = ParseServerConfig(text, "pool test config");
    ASSERT_TRUE(config.ok()) << config.status();
    auto started = FederationServer::Start(*config, "127.0.0.1:0", fs_, base::Clock::Real(),
                                           base::LogSink::Null());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    stub_ = v1::Federation::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  void StopServer() {
    if (server_ == nullptr) return;
    server_->Shutdown();
    EXPECT_TRUE(server_->Wait().ok());
    server_.reset();
  }

  static void Authorize(grpc::ClientContext& context, const std::string& token) {
    context.AddMetadata("authorization", "Bearer " + token);
  }
  grpc::Status Propose(const v1::ProposeModuleRequest& request, v1::ProposeModuleResponse* out,
                       const std::string& token) {
    grpc::ClientContext context;
    Authorize(context, token);
    return stub_->ProposeModule(&context, request, out);
  }
  grpc::Status Propose(const v1::ProposeModuleRequest& request, v1::ProposeModuleResponse* out) {
    return Propose(request, out, TokenOf(static_cast<int>(request.client_id())));
  }
  void Join(int client) {
    grpc::ClientContext context;
    Authorize(context, TokenOf(client));
    v1::JoinRequest join;
    join.set_client_id(client);
    v1::JoinResponse joined;
    ASSERT_TRUE(stub_->Join(&context, join, &joined).ok());
  }
  v1::GetWorkResponse GetWork(int client) {
    grpc::ClientContext context;
    Authorize(context, TokenOf(client));
    v1::GetWorkRequest request;
    request.set_client_id(client);
    v1::GetWorkResponse response;
    EXPECT_TRUE(stub_->GetWork(&context, request, &response).ok());
    return response;
  }
  std::vector<std::string> WorkModules(int client) {
    const v1::GetWorkResponse response = GetWork(client);
    std::vector<std::string> names;
    for (const v1::ModuleDescriptor& m : response.modules()) {
      names.push_back(m.role() == "expert"          ? absl::StrCat(m.name(), "@", m.block())
                      : m.role() == "instance_pool" ? absl::StrCat(m.name(), "#")
                                                    : m.name());
    }
    return names;
  }
  absl::StatusOr<v1::ModulePayload> Download(int client, const std::string& name, int64_t version,
                                             bool with_descriptor) {
    grpc::ClientContext context;
    Authorize(context, TokenOf(client));
    v1::DownloadModuleRequest request;
    request.set_client_id(client);
    request.set_name(name);
    request.set_version(version);
    request.set_with_descriptor(with_descriptor);
    auto reader = stub_->DownloadModule(&context, request);
    std::string bytes;
    v1::Chunk chunk;
    while (reader->Read(&chunk)) bytes += chunk.data();
    grpc::Status status = reader->Finish();
    if (!status.ok()) return absl::UnknownError(status.error_message());
    v1::ModulePayload payload;
    if (!payload.ParseFromString(bytes)) return absl::DataLossError("bad payload");
    return payload;
  }
  // One update of `client` for round 0 carrying only the expert's delta, all `fill`.
  grpc::Status SubmitExpert(int client, const std::string& name, float fill) {
    const std::vector<fl::TensorSpec> layout = fl::ExpertLayout(kDim, kBottleneck);
    int64_t size = 0;
    for (const fl::TensorSpec& t : layout) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      size += n;
    }
    const std::vector<float> values(size, fill);
    const std::string data(reinterpret_cast<const char*>(values.data()), size * sizeof(float));
    grpc::ClientContext context;
    Authorize(context, TokenOf(client));
    v1::SubmitUpdateResponse response;
    auto writer = stub_->SubmitUpdate(&context, &response);
    v1::UpdateChunk header;
    v1::UpdateHeader* h = header.mutable_header();
    h->set_client_id(client);
    h->set_round(0);
    h->set_num_samples(8);
    h->set_local_steps(1);
    v1::ModuleDelta* delta = h->add_modules();
    delta->set_name(name);
    proto::LayoutToProto(layout, delta->mutable_layout());
    h->set_total_bytes(static_cast<int64_t>(data.size()));
    h->set_crc32(base::Crc32(data));
    v1::UpdateChunk chunk;
    chunk.set_data(data);
    if (writer->Write(header)) writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish();
  }
  v1::GetStatusResponse Status() {
    grpc::ClientContext context;
    Authorize(context, TokenOf(1));
    v1::GetStatusResponse status;
    EXPECT_TRUE(stub_->GetStatus(&context, {}, &status).ok());
    return status;
  }

  base::FileSystem& fs_ = base::FileSystem::Default();
  std::string dir_;
  std::unique_ptr<FederationServer> server_;
  std::unique_ptr<v1::Federation::Stub> stub_;
};

TEST_F(ModulePoolServerTest, ProposalsGrowThePoolAndSurviveARestart) {
  StartServer();
  for (int client : {1, 2, 3}) Join(client);
  v1::ProposeModuleResponse response;
  EXPECT_EQ(Propose(Proposal(1, 0.0f, 0.5f), &response, "nope").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Propose(Proposal(1, 0.0f, 0.5f), &response, TokenOf(2)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::ProposeModuleRequest bad = Proposal(1, 0.0f, 0.5f);
  bad.set_block(0);
  EXPECT_EQ(Propose(bad, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad = Proposal(1, 0.0f, 0.5f);
  bad.set_statistics_variance(3, -1.0f);
  EXPECT_EQ(Propose(bad, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad = Proposal(1, 0.0f, 0.5f);
  bad.set_role("pet");
  EXPECT_EQ(Propose(bad, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Status().pool_size(), 0) << "refused proposals change nothing";

  ASSERT_TRUE(Propose(Proposal(1, 0.0f, 0.5f), &response).ok());
  EXPECT_EQ(response.name(), "block1/m1");
  EXPECT_FALSE(response.merged());
  ASSERT_TRUE(Propose(Proposal(2, 0.1f, 9.0f), &response).ok());
  EXPECT_EQ(response.module_id(), 1);
  EXPECT_TRUE(response.merged());
  EXPECT_GT(response.divergence(), 0.0);

  EXPECT_EQ(WorkModules(3), (std::vector<std::string>{"head"}));
  EXPECT_EQ(WorkModules(2), (std::vector<std::string>{"head", "block1/m1@1"}));
  auto plain = Download(2, "block1/m1", 0, false);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->module().role(), "expert");
  EXPECT_EQ(plain->parameters().tensors_size(), 6);
  EXPECT_EQ(plain->descriptor_tensors().tensors_size(), 0);
  auto described = Download(2, "block1/m1", 0, true);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->descriptor_tensors().tensors_size(), 1);

  // Both holders train it; the quota of 2 closes round 0: N = 2 holders, weights 1.
  ASSERT_TRUE(SubmitExpert(1, "block1/m1", 0.25f).ok());
  EXPECT_EQ(Status().pool(0).contributors(), 1);
  ASSERT_TRUE(SubmitExpert(2, "block1/m1", -0.75f).ok());
  v1::GetStatusResponse status = Status();
  EXPECT_EQ(status.round(), 1);
  ASSERT_EQ(status.pool_size(), 1);
  EXPECT_EQ(status.pool(0).name(), "block1/m1");
  EXPECT_EQ(status.pool(0).block(), 1);
  EXPECT_EQ(status.pool(0).version(), 1);
  EXPECT_EQ(status.pool(0).holders(), 2);
  EXPECT_EQ(status.pool_merges(), 1);
  auto after = Download(1, "block1/m1", 1, false);
  ASSERT_TRUE(after.ok()) << after.status();
  const std::string& bytes = after->parameters().tensors(0).data();
  EXPECT_FLOAT_EQ(*reinterpret_cast<const float*>(bytes.data()), 0.5f + (0.25f - 0.75f) / 2);

  // The server's ticker writes the metrics line shortly after the close: wait, bounded.
  absl::StatusOr<std::string> metrics = absl::NotFoundError("no metrics yet");
  for (int i = 0; i < 200 && !metrics.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(25));
    metrics = fs_.ReadFile(Path("state/metrics.jsonl"), 1 << 20);
  }
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_NE(metrics->find("\"pool\":{\"block1/m1\":{\"block\":1,\"version\":1,\"contributors\":2,"
                          "\"holders\":2}},\"pool_merges\":1"),
            std::string::npos)
      << *metrics;

  StopServer();
  StartServer();
  status = Status();
  ASSERT_EQ(status.pool_size(), 1);
  EXPECT_EQ(status.pool(0).name(), "block1/m1");
  EXPECT_EQ(status.pool(0).version(), 1);
  EXPECT_EQ(status.pool(0).holders(), 2);
  EXPECT_EQ(status.pool_merges(), 1);
  EXPECT_EQ(WorkModules(3), (std::vector<std::string>{"head"}));
  EXPECT_EQ(WorkModules(1), (std::vector<std::string>{"head", "block1/m1@1"}));
  auto restored = Download(1, "block1/m1", 1, true);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->parameters().tensors(0).data(), bytes);
  EXPECT_EQ(restored->descriptor_tensors().tensors_size(), 1);
  // A far proposal after the restart founds the next id.
  ASSERT_TRUE(Propose(Proposal(3, 6.0f, 0.5f), &response).ok());
  EXPECT_EQ(response.name(), "block1/m2");
}

// A descriptor trained after the proposal reaches the pool through AttachDescriptor: the first
// holder's stays, GetWork flags the expert, and downloads with_descriptor carry it (the cached
// plain payload does not hide it).
TEST_F(ModulePoolServerTest, AttachDescriptorGivesAPooledExpertItsDescriptor) {
  StartServer();
  for (int client : {1, 2, 3}) Join(client);
  v1::ProposeModuleRequest bare = Proposal(1, 0.0f, 0.5f);
  bare.clear_descriptor_tensors();
  v1::ProposeModuleResponse response;
  ASSERT_TRUE(Propose(bare, &response).ok());
  bare = Proposal(2, 0.1f, 0.5f);
  bare.clear_descriptor_tensors();
  ASSERT_TRUE(Propose(bare, &response).ok());
  ASSERT_TRUE(response.merged());
  ASSERT_TRUE(Download(2, "block1/m1", 0, true).ok());  // cached without a descriptor
  EXPECT_EQ(Download(2, "block1/m1", 0, true)->descriptor_tensors().tensors_size(), 0);

  auto attach = [&](int client, const std::string& name, float fill,
                    v1::AttachDescriptorResponse* out) {
    v1::AttachDescriptorRequest request;
    request.set_client_id(client);
    request.set_name(name);
    nn::ParameterSet descriptor("descriptor");
    descriptor.Add("losses", {4}, false);
    descriptor.flat_values().setConstant(fill);
    proto::ToProto(descriptor, request.mutable_descriptor_tensors());
    grpc::ClientContext context;
    Authorize(context, TokenOf(client));
    return stub_->AttachDescriptor(&context, request, out);
  };
  v1::AttachDescriptorResponse attached;
  EXPECT_EQ(attach(3, "block1/m1", 1.0f, &attached).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // not a holder
  EXPECT_EQ(attach(1, "head", 1.0f, &attached).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(attach(1, "block1/m1", NAN, &attached).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  {
    v1::AttachDescriptorRequest request;
    request.set_client_id(1);
    request.set_name("block1/m1");
    grpc::ClientContext context;
    Authorize(context, TokenOf(2));  // another client's token
    EXPECT_EQ(stub_->AttachDescriptor(&context, request, &attached).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  ASSERT_TRUE(attach(2, "block1/m1", 2.0f, &attached).ok());
  EXPECT_TRUE(attached.attached());
  ASSERT_TRUE(attach(1, "block1/m1", 3.0f, &attached).ok());
  EXPECT_FALSE(attached.attached());  // the first one stays

  const v1::GetWorkResponse work = GetWork(1);
  ASSERT_EQ(work.modules_size(), 2);
  EXPECT_TRUE(work.modules(1).has_descriptor());
  auto described = Download(1, "block1/m1", 0, true);
  ASSERT_TRUE(described.ok()) << described.status();
  ASSERT_EQ(described->descriptor_tensors().tensors_size(), 1);
  EXPECT_EQ(proto::FromProto(described->descriptor_tensors())->flat_values()(0), 2.0f);
  EXPECT_EQ(Download(1, "block1/m1", 0, false)->descriptor_tensors().tensors_size(), 0);
}

// fedins { pool_size } serves FedIns' instance pool: the keys, SSF sets and heads a device's
// learner runs with the same pool size, by name and layout, with role instance_pool.
TEST_F(ModulePoolServerTest, FedInsSectionServesTheInstancePoolALearnerRuns) {
  StartServer(R"pb(fedins { pool_size: 3 })pb");
  Join(1);
  EXPECT_EQ(WorkModules(1), (std::vector<std::string>{
                                "fedins/keys#", "fedins/ssf0#", "fedins/ssf1#", "fedins/ssf2#",
                                "fedins/head0#", "fedins/head1#", "fedins/head2#"}));
  auto loaded = proto::LoadCheckpoint(fs_, Path("vit.ckpt"), proto::kDefaultMaxCheckpointBytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  cl::LearnerOptions options{.method = "fedins", .method_options = "pool_size: 3"};
  auto learner = cl::Learner::Create(std::move(loaded->model), options);
  ASSERT_TRUE(learner.ok()) << learner.status();
  for (nn::ParameterSet* local : (*learner)->SharedModules()) {
    absl::StatusOr<v1::ModulePayload> payload = Download(1, local->name(), 0, false);
    ASSERT_TRUE(payload.ok()) << local->name() << ": " << payload.status();
    absl::StatusOr<nn::ParameterSet> served = proto::FromProto(payload->parameters());
    ASSERT_TRUE(served.ok()) << served.status();
    EXPECT_TRUE(local->CheckSameLayout(*served).ok()) << local->name();
    EXPECT_TRUE(served->flat_values().allFinite());
  }
}

}  // namespace
}  // namespace fedcl::server
