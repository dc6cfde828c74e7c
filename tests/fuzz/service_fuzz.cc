// Fuzz target: every fedcl.v1.Federation method through the real service's handlers, in process
// (FederationServer::InProcessChannel): the decoding of requests, the checks before the
// coordinator, the upload reactor's header and data handling. A tiny ViT server with a head and
// a module pool, no tokens (every call is allowed, so the fuzzer reaches past authentication),
// on a manual clock (no deadline passes by itself).
//
// Input: a sequence of calls, each a method selector byte and a framed request; a SubmitUpdate is
// followed by a count byte and that many framed chunks. The server keeps its state across inputs
// as a real one does, and is replaced by a fresh one every kInputsPerServer inputs to bound it.
// Every call has a deadline, so a handler that never answers shows up as a slow input.
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "core/base/clock.h"
#include "core/base/crc32.h"
#include "core/base/log.h"
#include "core/nn/model.h"
#include "grpcpp/grpcpp.h"
#include "proto/checkpoint.h"
#include "proto/federation_convert.h"
#include "server/federation_server.h"
#include "server/server_config.h"
#include "tests/fuzz/fuzz_target.h"

namespace fedcl::fuzz {
namespace {

constexpr int kInputsPerServer = 5000;
enum Method : uint8_t {
  kJoin,
  kGetWork,
  kDownloadBackbone,
  kDownloadModule,
  kSubmitUpdate,
  kLeave,
  kGetStatus,
  kReportShard,
  kProposeModule,
  kAttachDescriptor,
  kNumMethods
};

nn::ModelConfig TinyVit() {
  nn::ModelConfig config;
  config.image_height = config.image_width = 8;
  config.vit = {.patch = 4, .dim = 8, .depth = 2, .heads = 2, .mlp_ratio = 2};
  config.num_classes = 4;
  return config;
}

class InProcessServer {
 public:
  InProcessServer() {
    char pattern[] = "/tmp/fedcl_service_fuzz_XXXXXX";
    if (::mkdtemp(pattern) == nullptr) abort();
    dir_ = pattern;
    base::FileSystem& fs = base::FileSystem::Default();
    auto model = nn::Model::Create(TinyVit(), 1);
    if (!model.ok() || !proto::SaveCheckpoint(fs, dir_ + "/vit.ckpt", **model, {}, {}).ok()) {
      abort();
    }
    const std::string text = absl::StrFormat(
        R"pb(
          state_dir: "%s/state"
          backbone_checkpoint: "%s/vit.ckpt"
          module { name: "head" role: "head" }
          pool { expandable_blocks: 1 expert_bottleneck: 2 }
          round { duration_ms: 600000 max_participants: 2 }
          limits { max_concurrent_uploads: 2 max_message_bytes: 262144 chunk_bytes: 65536 }
          journal { sync: "normal" }
        )pb",
        dir_, dir_);
    absl::StatusOr<v1::ServerConfig> config = server::ParseServerConfig(text, "service fuzz");
    if (!config.ok()) abort();
    auto started =
        server::FederationServer::Start(*config, "127.0.0.1:0", fs, clock_, base::LogSink::Null());
    if (!started.ok()) abort();
    server_ = *std::move(started);
    stub_ = v1::Federation::NewStub(server_->InProcessChannel());
  }
  ~InProcessServer() {
    stub_.reset();
    server_->Shutdown();
    (void)server_->Wait();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void Call(FuzzInput& input) {
    const uint8_t method = input.Byte() % kNumMethods;
    const std::string frame(input.Frame());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    switch (method) {
      case kJoin:
        Unary(&v1::Federation::Stub::Join, context, frame, v1::JoinResponse());
        break;
      case kGetWork:
        Unary(&v1::Federation::Stub::GetWork, context, frame, v1::GetWorkResponse());
        break;
      case kDownloadBackbone: {
        v1::DownloadBackboneRequest request;
        if (request.ParseFromString(frame)) Drain(stub_->DownloadBackbone(&context, request));
        break;
      }
      case kDownloadModule: {
        v1::DownloadModuleRequest request;
        if (request.ParseFromString(frame)) Drain(stub_->DownloadModule(&context, request));
        break;
      }
      case kSubmitUpdate: {
        v1::SubmitUpdateResponse response;
        std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer =
            stub_->SubmitUpdate(&context, &response);
        v1::UpdateChunk chunk;
        bool open = chunk.ParseFromString(frame) && writer->Write(chunk);
        for (int count = input.Byte() % 8; count > 0 && open; --count) {
          open = chunk.ParseFromString(std::string(input.Frame())) && writer->Write(chunk);
        }
        writer->WritesDone();
        (void)writer->Finish();
        break;
      }
      case kLeave:
        Unary(&v1::Federation::Stub::Leave, context, frame, v1::LeaveResponse());
        break;
      case kGetStatus:
        Unary(&v1::Federation::Stub::GetStatus, context, frame, v1::GetStatusResponse());
        break;
      case kReportShard:
        Unary(&v1::Federation::Stub::ReportShard, context, frame, v1::ReportShardResponse());
        break;
      case kProposeModule:
        Unary(&v1::Federation::Stub::ProposeModule, context, frame, v1::ProposeModuleResponse());
        break;
      case kAttachDescriptor:
        Unary(&v1::Federation::Stub::AttachDescriptor, context, frame,
              v1::AttachDescriptorResponse());
        break;
    }
  }

 private:
  // Request type from the stub method's signature.
  template <typename Request, typename Response>
  void Unary(grpc::Status (v1::Federation::Stub::*call)(grpc::ClientContext*, const Request&,
                                                        Response*),
             grpc::ClientContext& context, const std::string& frame, Response response) {
    Request request;
    if (request.ParseFromString(frame)) (void)((*stub_).*call)(&context, request, &response);
  }
  void Drain(std::unique_ptr<grpc::ClientReader<v1::Chunk>> reader) {
    v1::Chunk chunk;
    while (reader->Read(&chunk)) {
    }
    (void)reader->Finish();
  }

  base::ManualClock clock_{absl::FromUnixSeconds(1700000000)};
  std::string dir_;
  std::unique_ptr<server::FederationServer> server_;
  std::unique_ptr<v1::Federation::Stub> stub_;
};

std::string CallFrame(Method method, const google::protobuf::MessageLite& request) {
  return std::string(1, static_cast<char>(method)) + MakeFrame(request.SerializeAsString());
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Seeds() {
  auto model = nn::Model::Create(TinyVit(), 1);
  if (!model.ok()) abort();
  const nn::ParameterSet& head = (*model)->head().parameters();
  std::vector<std::pair<std::string, std::string>> seeds;
  for (int64_t round : {0, 1}) {
    const uint64_t client = 1 + round;
    std::string calls;
    v1::JoinRequest join;
    join.set_client_id(client);
    calls += CallFrame(kJoin, join);
    v1::GetWorkRequest work;
    work.set_client_id(client);
    calls += CallFrame(kGetWork, work);
    v1::DownloadBackboneRequest backbone;
    backbone.set_client_id(client);
    calls += CallFrame(kDownloadBackbone, backbone);
    v1::DownloadModuleRequest module;
    module.set_client_id(client);
    module.set_name("head");
    calls += CallFrame(kDownloadModule, module);
    // An honest update of the head, in two data chunks.
    std::string data;
    for (int64_t i = 0; i < head.num_values(); ++i) {
      const float v = 0.001f * static_cast<float>(i % 17) - 0.008f;
      data.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    v1::UpdateChunk header;
    v1::UpdateHeader* h = header.mutable_header();
    h->set_client_id(client);
    h->set_round(round);
    h->set_num_samples(16);
    h->set_local_steps(2);
    h->set_loss(1.25);
    v1::ModuleDelta* delta = h->add_modules();
    delta->set_name("head");
    std::vector<fl::TensorSpec> layout;
    for (const nn::TensorInfo& t : head.tensors()) layout.push_back({t.name, t.shape});
    proto::LayoutToProto(layout, delta->mutable_layout());
    h->set_total_bytes(static_cast<int64_t>(data.size()));
    h->set_crc32(base::Crc32(data));
    calls += CallFrame(kSubmitUpdate, header);
    calls.push_back(2);
    v1::UpdateChunk part;
    part.set_data(data.substr(0, data.size() / 2));
    calls += MakeFrame(part.SerializeAsString());
    part.set_data(data.substr(data.size() / 2));
    calls += MakeFrame(part.SerializeAsString());
    calls += CallFrame(kGetStatus, v1::GetStatusRequest());
    v1::ProposeModuleRequest propose;
    propose.set_client_id(client);
    propose.set_round(round);
    propose.set_block(1);
    propose.set_role("adapter");
    calls += CallFrame(kProposeModule, propose);
    v1::AttachDescriptorRequest attach;
    attach.set_client_id(client);
    attach.set_name("pool.b1.e0");
    calls += CallFrame(kAttachDescriptor, attach);
    v1::ReportShardRequest report;
    report.set_round(round);
    report.set_num_shards(1);
    calls += CallFrame(kReportShard, report);
    v1::LeaveRequest leave;
    leave.set_client_id(client);
    calls += CallFrame(kLeave, leave);
    seeds.emplace_back("session-round-" + std::to_string(round), calls);
  }
  return seeds;
}

}  // namespace fedcl::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<fedcl::fuzz::InProcessServer> server;
  static int inputs = 0;
  if (server == nullptr || ++inputs % fedcl::fuzz::kInputsPerServer == 0) {
    server.reset();
    server = std::make_unique<fedcl::fuzz::InProcessServer>();
  }
  fedcl::fuzz::FuzzInput input(data, size);
  for (int calls = 0; calls < 16 && !input.empty(); ++calls) server->Call(input);
  return 0;
}
