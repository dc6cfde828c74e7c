#include "tests/bench/load_client.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"

namespace fedcl::bench {
namespace {

namespace pb = ::fedcl::v1;

bool Retriable(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

absl::Duration Backoff(int attempt) {
  return std::min(absl::Milliseconds(10) * (int64_t{1} << std::min(attempt, 10)), absl::Seconds(1));
}

absl::Status ToStatus(absl::string_view what, const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

// The deadline and, if the client has one, its bearer token.
void Prepare(const LoadClientOptions& options, uint64_t client_id, grpc::ClientContext& context) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.rpc_timeout));
  auto it = options.tokens.find(client_id);
  const std::string& token = it != options.tokens.end() ? it->second : options.token;
  if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
}

// Downloads one module version and returns its ParameterSet with the tensor data cleared.
absl::StatusOr<pb::ParameterSet> DownloadLayout(const LoadClientOptions& options,
                                                LoadClient& client,
                                                const pb::ModuleDescriptor& module) {
  grpc::ClientContext context;
  Prepare(options, client.id(), context);
  pb::DownloadModuleRequest request;
  request.set_client_id(client.id());
  request.set_name(module.name());
  request.set_version(module.version());
  std::unique_ptr<grpc::ClientReader<pb::Chunk>> reader =
      client.stub().DownloadModule(&context, request);
  std::string payload;
  int64_t total = -1;
  uint32_t crc = 0;
  absl::Status order;
  pb::Chunk chunk;
  while (order.ok() && reader->Read(&chunk)) {
    if (chunk.offset() != static_cast<int64_t>(payload.size())) {
      order = absl::DataLossError(absl::StrCat("module ", module.name(), ": chunk at offset ",
                                               chunk.offset(), ", expected ", payload.size()));
      context.TryCancel();
    }
    if (chunk.offset() == 0) total = chunk.total_bytes(), crc = chunk.crc32();
    payload += chunk.data();
  }
  grpc::Status status = reader->Finish();
  if (!order.ok()) return order;
  if (!status.ok()) return ToStatus(absl::StrCat("DownloadModule ", module.name()), status);
  if (total != static_cast<int64_t>(payload.size()) || base::Crc32(payload) != crc) {
    return absl::DataLossError(absl::StrCat("module ", module.name(), ": size or CRC-32 mismatch"));
  }
  pb::ModulePayload parsed;
  if (!parsed.ParseFromString(payload)) {
    return absl::DataLossError(absl::StrCat("module ", module.name(), ": unparsable payload"));
  }
  pb::ParameterSet layout = std::move(*parsed.mutable_parameters());
  for (pb::Tensor& tensor : *layout.mutable_tensors()) tensor.clear_data();
  return layout;
}

absl::StatusOr<ModuleLayout> LearnLayout(const LoadClientOptions& options, LoadClient& client,
                                         const pb::ModuleDescriptor& module) {
  ModuleLayout out{module.name(), module.num_values(), {}};
  if (options.flat_layout) {
    pb::Tensor* tensor = out.layout.add_tensors();
    tensor->set_name("w");
    tensor->add_shape(module.num_values());
    tensor->set_dtype(pb::DTYPE_FLOAT32);
    tensor->set_trainable(true);
    return out;
  }
  absl::StatusOr<pb::ParameterSet> layout = DownloadLayout(options, client, module);
  if (!layout.ok()) return layout.status();
  int64_t values = 0;
  for (const pb::Tensor& tensor : layout->tensors()) {
    int64_t n = 1;
    for (int64_t d : tensor.shape()) n *= d;
    values += n;
  }
  if (values != module.num_values()) {
    return absl::FailedPreconditionError(absl::StrCat("module ", module.name(), ": layout holds ",
                                                      values, " values, GetWork says ",
                                                      module.num_values()));
  }
  out.layout = *std::move(layout);
  return out;
}

// Fills the data chunks: small finite float32 values, little-endian, cut into chunks.
void BuildData(uint64_t seed, Workload& workload) {
  std::string bytes(static_cast<size_t>(workload.values) * sizeof(float), '\0');
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> uniform(-1e-3f, 1e-3f);
  for (int64_t i = 0; i < workload.values; ++i) {
    float v = uniform(rng);
    std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));  // x86-64: little-endian
  }
  workload.crc32 = base::Crc32(bytes);
  for (size_t offset = 0; offset < bytes.size(); offset += workload.chunk_bytes) {
    workload.data_chunks.emplace_back().set_data(bytes.substr(offset, workload.chunk_bytes));
  }
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const LoadClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // Without this, channels with equal arguments share one connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.target, credentials, args);
}

void CallStats::AddError(grpc::StatusCode code) {
  // gRPC and Abseil share the canonical code numbers.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  absl::MutexLock lock(&mu_);
  ++errors_[name];
}

std::map<std::string, int64_t> CallStats::errors() const {
  absl::MutexLock lock(&mu_);
  return errors_;
}

absl::StatusOr<Workload> LearnWorkload(const LoadClientOptions& options, LoadClient& client,
                                       const pb::GetWorkResponse& work, absl::string_view module,
                                       int64_t chunk_bytes, uint64_t seed) {
  Workload workload;
  workload.chunk_bytes = chunk_bytes;
  for (const pb::ModuleDescriptor& descriptor : work.modules()) {
    if (!module.empty() && descriptor.name() != module) continue;
    absl::StatusOr<ModuleLayout> layout = LearnLayout(options, client, descriptor);
    if (!layout.ok()) return layout.status();
    workload.values += layout->num_values;
    workload.modules.push_back(*std::move(layout));
  }
  if (workload.modules.empty()) {
    return absl::NotFoundError(
        absl::StrCat("GetWork offers no module", module.empty() ? "" : " named ", module));
  }
  BuildData(seed, workload);
  return workload;
}

LoadClient::LoadClient(const LoadClientOptions& options, uint64_t id, CallStats& stats,
                       std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      id_(id),
      stats_(stats),
      stub_(pb::Federation::NewStub(channel != nullptr ? std::move(channel)
                                                       : MakeChannel(options))) {}

template <typename Call>
grpc::Status LoadClient::WithRetries(Call call) {
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext context;
    Prepare(options_, id_, context);
    grpc::Status status = call(context);
    if (status.ok()) return status;
    stats_.AddError(status.error_code());
    if (!Retriable(status.error_code()) || attempt >= options_.max_retries) return status;
    stats_.AddRetry();
    absl::SleepFor(Backoff(attempt));
  }
}

absl::StatusOr<pb::JoinResponse> LoadClient::Join() {
  pb::JoinRequest request;
  request.set_client_id(id_);
  request.mutable_capabilities()->set_software("fedcl_submit_load");
  pb::JoinResponse response;
  grpc::Status status = WithRetries([&](grpc::ClientContext& context) {
    context.set_wait_for_ready(true);
    return stub_->Join(&context, request, &response);
  });
  if (!status.ok()) return ToStatus("Join", status);
  return response;
}

absl::StatusOr<pb::GetWorkResponse> LoadClient::AwaitWork(int64_t after_round, absl::Time deadline,
                                                          const std::atomic<bool>& abort) {
  int64_t waits = 0;
  while (!abort.load()) {
    pb::GetWorkRequest request;
    request.set_client_id(id_);
    for (const auto& [name, version] : held_) {
      pb::ModuleVersion* held = request.add_held();
      held->set_name(name);
      held->set_version(version);
    }
    pb::GetWorkResponse response;
    grpc::Status status = WithRetries(
        [&](grpc::ClientContext& context) { return stub_->GetWork(&context, request, &response); });
    if (!status.ok()) return ToStatus("GetWork", status);
    if (response.action() == pb::GetWorkResponse::ACTION_TRAIN && response.round() > after_round) {
      stats_.AddWaits(waits);
      held_.clear();
      for (const pb::ModuleDescriptor& m : response.modules()) held_[m.name()] = m.version();
      return response;
    }
    ++waits;
    absl::Duration delay = std::clamp(absl::Milliseconds(response.retry_after_ms()),
                                      absl::Milliseconds(1), options_.max_retry_after);
    if (absl::Now() + delay > deadline) {
      stats_.AddWaits(waits);
      return absl::DeadlineExceededError(
          absl::StrCat("client ", id_, ": no work after round ", after_round));
    }
    absl::SleepFor(delay);
  }
  stats_.AddWaits(waits);
  return absl::CancelledError("aborted");
}

pb::UpdateChunk LoadClient::Header(const Workload& workload, int64_t round) {
  pb::UpdateChunk header_chunk;
  pb::UpdateHeader* header = header_chunk.mutable_header();
  header->set_client_id(id_);
  header->set_round(round);
  header->set_num_samples(80);  // what the default recipe (5 steps of 16) would report
  header->set_local_steps(5);
  header->set_loss(1.0);
  for (const ModuleLayout& module : workload.modules) {
    pb::ModuleDelta* delta = header->add_modules();
    delta->set_name(module.name);
    delta->set_base_version(held_[module.name]);
    *delta->mutable_layout() = module.layout;
  }
  header->set_total_bytes(workload.values * static_cast<int64_t>(sizeof(float)));
  header->set_crc32(workload.crc32);
  return header_chunk;
}

absl::StatusOr<pb::SubmitUpdateResponse> LoadClient::Submit(const Workload& workload,
                                                            int64_t round) {
  const pb::UpdateChunk header_chunk = Header(workload, round);
  pb::SubmitUpdateResponse response;
  grpc::Status status = WithRetries([&](grpc::ClientContext& context) {
    std::unique_ptr<grpc::ClientWriter<pb::UpdateChunk>> writer =
        stub_->SubmitUpdate(&context, &response);
    bool open = writer->Write(header_chunk);
    for (size_t i = 0; open && i < workload.data_chunks.size(); ++i) {
      open = writer->Write(workload.data_chunks[i]);
    }
    if (open) writer->WritesDone();
    return writer->Finish();  // a broken stream reports the server's status here
  });
  if (!status.ok()) return ToStatus("SubmitUpdate", status);
  return response;
}

std::unique_ptr<LoadClient::OpenUpload> LoadClient::StartStalledSubmit(const Workload& workload,
                                                                       int64_t round,
                                                                       size_t chunks) {
  auto upload = std::make_unique<OpenUpload>();
  Prepare(options_, id_, upload->context_);
  upload->writer_ = stub_->SubmitUpdate(&upload->context_, &upload->response_);
  bool open = upload->writer_->Write(Header(workload, round));
  for (size_t i = 0; open && i < std::min(chunks, workload.data_chunks.size()); ++i) {
    open = upload->writer_->Write(workload.data_chunks[i]);
  }
  return upload;
}

}  // namespace fedcl::bench
