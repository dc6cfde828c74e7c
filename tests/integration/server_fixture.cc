#include "tests/integration/server_fixture.h"

#include <zlib.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/base/filesystem.h"
#include "core/nn/model.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "server/health.h"

namespace fedcl::testing {
namespace {

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

void SaveMlpBackbone(const std::string& path, int hidden, int classes) {
  nn::ModelConfig config;
  config.backbone = nn::BackboneKind::kMlp;
  config.image_height = config.image_width = 8;
  config.mlp.hidden = {hidden};
  config.num_classes = classes;
  auto model = nn::Model::Create(config, 3);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE(proto::SaveCheckpoint(base::FileSystem::Default(), path, **model, {}, {}).ok());
}

ServerFixture::ServerFixture() {
  char pattern[] = "/tmp/fedcl_it_XXXXXX";
  dir_ = mkdtemp(pattern);
  // A tiny MLP backbone: what the server serves matters, not how good it is.
  nn::ModelConfig config;
  config.backbone = nn::BackboneKind::kMlp;
  config.image_height = config.image_width = 8;
  config.mlp.hidden = {10};
  config.num_classes = 4;
  auto model = nn::Model::Create(config, 1);
  EXPECT_TRUE(model.ok());
  EXPECT_TRUE(
      proto::SaveCheckpoint(base::FileSystem::Default(), dir_ + "/backbone.ckpt", **model, {}, {})
          .ok());
  std::string tokens_file;
  for (int client = 0; client < 16; ++client) {
    tokens_[client] = absl::StrCat("token-of-client-", client, "-0123456789abcdef0123456789");
    tokens_file +=
        absl::StrCat("client ", client, " sha256:", proto::Sha256Hex(tokens_[client]), "\n");
  }
  // A worker token outside the clients' ids, for tests that close barrier rounds themselves.
  worker_token_ = "token-of-the-round-driver-0123456789abcdef0123456789";
  tokens_file +=
      absl::StrCat("worker 1000000-1000000 sha256:", proto::Sha256Hex(worker_token_), "\n");
  WriteText(dir_ + "/tokens.txt", tokens_file);
  const std::string ca =
      absl::StrCat(FEDCL_SOURCE_DIR, "/deploy/dev_ca.sh ", dir_, "/tls > /dev/null");
  EXPECT_EQ(std::system(ca.c_str()), 0) << "deploy/dev_ca.sh failed";
}

ServerFixture::~ServerFixture() {
  server_.reset();
  std::system(absl::StrCat("rm -rf ", dir_).c_str());
}

void ServerFixture::WriteConfig(const std::string& extra) {
  WriteText(
      dir_ + "/server.textproto",
      absl::StrCat("state_dir: \"", dir_, "/state\"\n", "backbone_checkpoint: \"", dir_,
                   "/backbone.ckpt\"\n", "tokens_file: \"", dir_, "/tokens.txt\"\n",
                   "tls { cert_file: \"", dir_, "/tls/server.pem\" key_file: \"", dir_,
                   "/tls/server.key\" }\n", "module { name: \"head\" role: \"head\" }\n", extra));
}

void ServerFixture::WriteRawConfig(const std::string& text) {
  WriteText(dir_ + "/server.textproto", text);
}

std::string ServerFixture::TokenFile(int client) {
  const std::string path = absl::StrCat(dir_, "/client-", client, ".token");
  WriteText(path, tokens_[client]);
  return path;
}

std::string ServerFixture::TlsConfigHead(const std::string& backbone) const {
  return absl::StrCat("state_dir: \"", dir_, "/state\"\n", "backbone_checkpoint: \"", backbone,
                      "\"\n", "num_classes: 10\n", "tokens_file: \"", dir_, "/tokens.txt\"\n",
                      "tls { cert_file: \"", dir_, "/tls/server.pem\" key_file: \"", dir_,
                      "/tls/server.key\" }\n");
}

std::vector<std::string> ServerFixture::DeviceLoopArgs(int client, const std::string& data_dir) {
  return {BinaryPath("fedcl-device-loop"),
          "--server=" + address_,
          "--tls_ca=" + dir_ + "/tls/ca.pem",
          "--tls_server_name=localhost",
          absl::StrCat("--client_id=", client),
          "--token_file=" + TokenFile(client),
          absl::StrCat("--storage_dir=", dir_, "/device-", client),
          absl::StrCat("--images=", data_dir, "/train-images-idx3-ubyte.gz"),
          absl::StrCat("--labels=", data_dir, "/train-labels-idx1-ubyte.gz")};
}

void ServerFixture::StartServer(const std::string& listen) {
  auto server = ChildProcess::Start(
      {BinaryPath("fedcl-server"), "--config=" + dir_ + "/server.textproto", "--listen=" + listen},
      dir_ + "/server.log");
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = *std::move(server);
  auto line = server_->WaitForLine("listening on", absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status() << "\nserver log:\n" << ReadText(dir_ + "/server.log");
  address_ = line->substr(line->rfind(' ') + 1);
  Connect();
}

void ServerFixture::KillServer() {
  server_->Signal(SIGKILL);
  EXPECT_TRUE(server_->Wait(absl::Seconds(10)).ok());
  server_.reset();
}

absl::StatusOr<int> ServerFixture::StopServer(int signal) {
  server_->Signal(signal);
  absl::StatusOr<int> code = server_->Wait(absl::Seconds(10));
  server_.reset();
  return code;
}

void ServerFixture::Connect() {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadText(dir_ + "/tls/ca.pem");
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  channel_ = grpc::CreateCustomChannel(address_, grpc::SslCredentials(tls), args);
  stub_ = fedcl::v1::Federation::NewStub(channel_);
}

namespace {

void Authorize(grpc::ClientContext& context, const std::string& token) {
  context.AddMetadata("authorization", "Bearer " + token);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

}  // namespace

grpc::Status ServerFixture::Join(int client, fedcl::v1::JoinResponse* response) {
  grpc::ClientContext context;
  Authorize(context, tokens_[client]);
  fedcl::v1::JoinRequest request;
  request.set_client_id(client);
  fedcl::v1::JoinResponse ignored;
  return stub_->Join(&context, request, response ? response : &ignored);
}

grpc::Status ServerFixture::GetWork(int client, fedcl::v1::GetWorkResponse* response) {
  grpc::ClientContext context;
  Authorize(context, tokens_[client]);
  fedcl::v1::GetWorkRequest request;
  request.set_client_id(client);
  return stub_->GetWork(&context, request, response);
}

grpc::Status ServerFixture::Status(fedcl::v1::GetStatusResponse* response) {
  grpc::ClientContext context;
  Authorize(context, tokens_[0]);
  return stub_->GetStatus(&context, fedcl::v1::GetStatusRequest(), response);
}

grpc::Status ServerFixture::ReportShard(int64_t round, fedcl::v1::ReportShardResponse* response) {
  grpc::ClientContext context;
  Authorize(context, worker_token_);
  fedcl::v1::ReportShardRequest request;
  request.set_shard(0);
  request.set_num_shards(1);
  request.set_round(round);
  return stub_->ReportShard(&context, request, response);
}

absl::StatusOr<int> ServerFixture::HealthCheck() {
  return server::CheckHealth(channel_, absl::Seconds(5));
}

absl::StatusOr<std::vector<float>> ServerFixture::DownloadModule(int client,
                                                                 const std::string& name,
                                                                 int64_t version) {
  grpc::ClientContext context;
  Authorize(context, tokens_[client]);
  fedcl::v1::DownloadModuleRequest request;
  request.set_client_id(client);
  request.set_name(name);
  request.set_version(version);
  auto reader = stub_->DownloadModule(&context, request);
  std::string bytes;
  fedcl::v1::Chunk chunk;
  while (reader->Read(&chunk)) bytes += chunk.data();
  grpc::Status status = reader->Finish();
  if (!status.ok())
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  fedcl::v1::ModulePayload payload;
  if (!payload.ParseFromString(bytes)) return absl::DataLossError("bad module payload");
  std::vector<float> values;
  for (const auto& tensor : payload.parameters().tensors()) {
    const size_t n = tensor.data().size() / sizeof(float);
    const float* data = reinterpret_cast<const float*>(tensor.data().data());
    values.insert(values.end(), data, data + n);
  }
  return values;
}

ServerFixture::Update ServerFixture::MakeUpdate(int client, int64_t round, float fill) {
  Update u;
  u.client = client;
  u.round = round;
  u.values.assign(44, fill);  // head: weight [4, 10] + bias [4]
  return u;
}

std::string ServerFixture::Data(const Update& u) {
  return std::string(reinterpret_cast<const char*>(u.values.data()),
                     u.values.size() * sizeof(float));
}

fedcl::v1::UpdateChunk ServerFixture::Header(const Update& u, const std::string& data) {
  fedcl::v1::UpdateChunk header;
  fedcl::v1::UpdateHeader* h = header.mutable_header();
  h->set_client_id(u.client);
  h->set_round(u.round);
  h->set_num_samples(u.num_samples);
  h->set_local_steps(u.local_steps);
  h->set_loss(u.loss);
  fedcl::v1::ModuleDelta* delta = h->add_modules();
  delta->set_name(u.module);
  delta->set_base_version(u.base_version);
  auto* weight = delta->mutable_layout()->add_tensors();
  weight->set_name(u.weight_name);
  for (int64_t d : u.weight_shape) weight->add_shape(d);
  weight->set_dtype(static_cast<fedcl::v1::DType>(u.dtype));
  auto* bias = delta->mutable_layout()->add_tensors();
  bias->set_name("head.bias");
  bias->add_shape(4);
  bias->set_dtype(fedcl::v1::DTYPE_FLOAT32);
  h->set_total_bytes(u.declared_bytes.value_or(static_cast<int64_t>(data.size())));
  uint32_t crc =
      static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(data.data()), data.size()));
  h->set_crc32(u.corrupt_crc ? crc ^ 1u : crc);
  return header;
}

grpc::Status ServerFixture::Submit(const Update& u, fedcl::v1::SubmitUpdateResponse* response) {
  grpc::ClientContext context;
  Authorize(context, u.token.empty() ? tokens_[u.client] : u.token);
  fedcl::v1::SubmitUpdateResponse ignored;
  auto writer = stub_->SubmitUpdate(&context, response ? response : &ignored);
  const std::string data = Data(u);
  if (!writer->Write(Header(u, data))) return writer->Finish();
  if (u.oversized_chunk > 0) {
    fedcl::v1::UpdateChunk chunk;
    chunk.set_data(std::string(static_cast<size_t>(u.oversized_chunk), '\0'));
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish();
  }
  const size_t limit = u.cancel_midway ? data.size() / 2 : data.size();
  for (size_t offset = 0; offset < limit; offset += static_cast<size_t>(u.chunk_bytes)) {
    fedcl::v1::UpdateChunk chunk;
    chunk.set_data(data.substr(offset, std::min<size_t>(u.chunk_bytes, limit - offset)));
    if (!writer->Write(chunk)) break;
  }
  if (u.cancel_midway) {
    context.TryCancel();
    return writer->Finish();
  }
  writer->WritesDone();
  return writer->Finish();
}

ServerFixture::OpenUpload::OpenUpload(ServerFixture& f, const Update& u, size_t bytes,
                                      absl::Duration deadline) {
  context_.AddMetadata("authorization",
                       "Bearer " + (u.token.empty() ? f.tokens_[u.client] : u.token));
  context_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  writer_ = f.stub_->SubmitUpdate(&context_, &response_);
  const std::string data = Data(u);
  if (!writer_->Write(Header(u, data)) || bytes == 0) return;
  fedcl::v1::UpdateChunk chunk;
  chunk.set_data(data.substr(0, bytes));
  writer_->Write(chunk);
}

}  // namespace fedcl::testing
