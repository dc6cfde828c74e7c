#include "server/federation_server.h"

#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/cl/adapter_mixture.h"
#include "core/cl/instance_pool.h"
#include "core/data/fashion_mnist.h"
#include "core/fl/client_model.h"
#include "core/nn/training.h"
#include "core/peft/pet_module.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/envelope.h"
#include "server/metrics_line.h"
#include "server/server_config.h"

namespace fedcl::server {
namespace {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const v1::TlsConfig& tls,
                                                                     base::FileSystem& fs) {
  if (tls.cert_file().empty()) return grpc::InsecureServerCredentials();
  FEDCL_ASSIGN_OR_RETURN(std::string cert, fs.ReadFile(tls.cert_file(), 1 << 20));
  FEDCL_ASSIGN_OR_RETURN(std::string key, fs.ReadFile(tls.key_file(), 1 << 20));
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(options);
}

}  // namespace

FederationServer::FederationServer(const v1::ServerConfig& config, base::FileSystem& fs,
                                   base::Clock& clock, base::LogSink& log)
    : config_(config), fs_(fs), clock_(clock), log_(log) {}

FederationServer::~FederationServer() {
  Shutdown();
  if (ticker_.joinable()) ticker_.join();
  if (grpc_server_ != nullptr) {
    // Safe after Wait() too: a second Shutdown returns at once.
    grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc_server_->Wait();
  }
}

absl::StatusOr<std::unique_ptr<FederationServer>> FederationServer::Start(
    const v1::ServerConfig& config, const std::string& listen_address, base::FileSystem& fs,
    base::Clock& clock, base::LogSink& log) {
  std::unique_ptr<FederationServer> server(new FederationServer(config, fs, clock, log));
  FEDCL_RETURN_IF_ERROR(server->Init(listen_address));
  return server;
}

// The federated model (the checkpoint's backbone, a head for the task's classes) and the
// modules' initial values.
absl::Status FederationServer::BuildModel(std::vector<fl::StoredModule>* initial) {
  FEDCL_ASSIGN_OR_RETURN(
      proto::LoadedCheckpoint loaded,
      proto::LoadCheckpoint(fs_, config_.backbone_checkpoint(), proto::kDefaultMaxCheckpointBytes));
  nn::ModelConfig model_config = loaded.model->config();
  const int classes = config_.num_classes() > 0 ? config_.num_classes() : model_config.num_classes;
  if (classes != model_config.num_classes) {
    // A new task: same backbone, a fresh head for its classes.
    model_config.num_classes = classes;
    FEDCL_ASSIGN_OR_RETURN(model_, nn::Model::Create(model_config, config_.seed()));
    model_->backbone().parameters().flat_values() =
        loaded.model->backbone().parameters().flat_values();
  } else {
    loaded.modules.clear();  // detach before the model moves
    model_ = std::move(loaded.model);
  }
  std::vector<fl::ModuleSpec> specs;
  for (const v1::ModuleConfig& module : config_.module()) {
    FEDCL_ASSIGN_OR_RETURN(specs.emplace_back(), ModuleSpecFrom(module));
  }
  FEDCL_ASSIGN_OR_RETURN(*initial, fl::CreateInitialModules(*model_, specs, config_.seed()));
  if (config_.pool().base_experts()) {
    // SEMA's first adapter of each expandable block, initialised as a device's learner does
    // (a zero function until trained); devices take these values at their first sync.
    for (int block : config_.pool().expandable_blocks()) {
      fl::StoredModule expert;
      expert.spec.name = absl::StrCat("block", block, "/e0");
      expert.spec.role = fl::ModuleRole::kBaseExpert;
      expert.spec.block = block;
      base::Rng rng = base::Rng::ForStream(config_.seed(), {0xba5e, static_cast<uint64_t>(block)});
      expert.values = cl::NewExpert(expert.spec.name, model_->backbone().feature_dim(),
                                    config_.pool().expert_bottleneck(), rng);
      initial->push_back(std::move(expert));
    }
  }
  if (config_.fedins().pool_size() > 0) {
    base::Rng rng = base::Rng::ForStream(config_.seed(), {0xfed125});
    FEDCL_ASSIGN_OR_RETURN(
        cl::InstancePoolModules pool,
        cl::NewInstancePoolModules(model_->backbone(), model_->head().parameters(),
                                   config_.fedins().pool_size(), rng));
    auto add = [&](nn::ParameterSet values) {
      fl::StoredModule module;
      module.spec.name = values.name();
      module.spec.role = fl::ModuleRole::kInstancePool;
      values.SetAllTrainable(true);
      module.values = std::move(values);
      initial->push_back(std::move(module));
    };
    add(std::move(pool.keys));
    for (nn::ParameterSet& s : pool.ssf) add(std::move(s));
    for (nn::ParameterSet& s : pool.heads) add(std::move(s));
  }
  v1::ModelCheckpoint checkpoint;
  proto::CheckpointMetadata metadata;
  metadata.created_by = "fedcl-server backbone for federated training";
  FEDCL_RETURN_IF_ERROR(proto::ToCheckpointProto(*model_, {}, metadata, &checkpoint));
  backbone_ = MakePayload(checkpoint.SerializeAsString());
  backbone_digest_ = proto::Sha256Hex(backbone_->bytes);
  // The exact checkpoint clients download, for devices that are given it locally (the digest
  // they check covers these bytes, not the pretraining file the server started from).
  FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(config_.state_dir()));
  return proto::WriteEnvelope(fs_, base::JoinPath(config_.state_dir(), "backbone.ckpt"),
                              proto::PayloadKind::kModelCheckpoint, checkpoint);
}

absl::Status FederationServer::LoadEvaluationData() {
  const v1::EvaluationConfig& e = config_.evaluation();
  if (e.data_dir().empty()) return absl::OkStatus();
  data::FashionMnistOptions options;
  options.directory = e.data_dir();
  options.max_samples = e.max_samples();
  FEDCL_ASSIGN_OR_RETURN(
      data::Dataset dataset,
      data::LoadFashionMnist(fs_, options,
                             e.split() == "train" ? data::Split::kTrain : data::Split::kTest));
  evaluation_ = std::make_unique<data::Dataset>(std::move(dataset));
  return absl::OkStatus();
}

absl::Status FederationServer::Init(const std::string& listen_address) {
  std::vector<fl::StoredModule> initial;
  FEDCL_RETURN_IF_ERROR(BuildModel(&initial));
  FEDCL_RETURN_IF_ERROR(LoadEvaluationData());
  FEDCL_ASSIGN_OR_RETURN(
      store_, SqliteStateStore::Open(fs_, {config_.state_dir(), !config_.journal().disabled(),
                                           config_.journal().sync() == "full"}));
  FEDCL_ASSIGN_OR_RETURN(fl::CoordinatorOptions options, CoordinatorOptionsFrom(config_));
  FEDCL_ASSIGN_OR_RETURN(options.pool, PoolOptionsFrom(config_, model_->config()));
  absl::StatusOr<fl::StoredState> stored = store_->Load();
  if (stored.ok()) {
    // The stored pool must be the configured one (same names, roles and layouts), followed by
    // the experts devices added.
    size_t experts = 0;
    for (const fl::StoredModule& s : stored->modules) {
      experts += s.spec.role == fl::ModuleRole::kExpert ? 1 : 0;
    }
    if (stored->modules.size() - experts != initial.size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "state in '", config_.state_dir(), "' has ", stored->modules.size() - experts,
          " configured modules; the config has ", initial.size()));
    }
    for (size_t i = 0; i < initial.size(); ++i) {
      const fl::StoredModule& s = stored->modules[i];
      if (s.spec.name != initial[i].spec.name || s.spec.role != initial[i].spec.role) {
        return absl::FailedPreconditionError(absl::StrCat("stored module ", i, " is '", s.spec.name,
                                                          "'; the config names '",
                                                          initial[i].spec.name, "'"));
      }
      FEDCL_RETURN_IF_ERROR(initial[i].values.CheckSameLayout(s.values));
      stored->modules[i].spec.block = initial[i].spec.block;  // the pool file keeps no block
    }
    log_.Write(base::LogLevel::kInfo,
               absl::StrCat("resuming from '", config_.state_dir(), "': last closed round ",
                            stored->last_closed_round, ", ", stored->journal.size(),
                            " journaled updates in the open round"));
    FEDCL_ASSIGN_OR_RETURN(
        coordinator_, fl::Coordinator::Recover(options, clock_, store_.get(), *std::move(stored)));
  } else if (absl::IsNotFound(stored.status())) {
    FEDCL_ASSIGN_OR_RETURN(
        coordinator_, fl::Coordinator::Create(options, clock_, store_.get(), std::move(initial)));
  } else {
    return stored.status();
  }

  if (!config_.tokens_file().empty()) {
    FEDCL_ASSIGN_OR_RETURN(TokenAuthenticator auth,
                           TokenAuthenticator::Load(fs_, config_.tokens_file()));
    authenticator_ = std::make_unique<TokenAuthenticator>(std::move(auth));
  } else {
    log_.Write(base::LogLevel::kWarning,
               "no tokens_file: every call is accepted without authentication (development only)");
  }
  if (config_.tls().cert_file().empty()) {
    log_.Write(base::LogLevel::kWarning, "no TLS certificate: serving plaintext (loopback only)");
  }
  v1::ServerInfo info;
  info.set_protocol("fedcl.v1");
  proto::ToProto(model_->config(), info.mutable_model());
  info.set_backbone_digest(backbone_digest_);
  info.set_max_message_bytes(config_.limits().max_message_bytes());
  info.set_chunk_bytes(config_.limits().chunk_bytes());
  service_ =
      std::make_unique<FederationService>(*coordinator_, authenticator_.get(), info, backbone_,
                                          ServiceOptionsFrom(config_), clock_, log_);
  service_->SetRoundClosedHook([this](const absl::Status& closed) {
    for (const fl::RoundReport& report : coordinator_->TakeRoundReports()) Report(report);
    if (!closed.ok()) {
      log_.Write(base::LogLevel::kError, absl::StrCat("stopping: ", closed.ToString()));
      absl::MutexLock lock(&mu_);
      fatal_ = closed;
      stopping_ = true;
    }
  });

  FEDCL_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                         Credentials(config_.tls(), fs_));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen_address, credentials, &port_);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.limits().max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(config_.limits().max_message_bytes()));
  // Keep transport buffering independent of the number of clients (server memory O(D), not
  // O(K·D)): no bandwidth probing (it grows each stream's window to megabytes), a small per-stream
  // lookahead, and one memory quota for all of gRPC's buffers.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024);
  grpc::ResourceQuota quota("fedcl-server");
  quota.Resize(
      static_cast<size_t>(std::max<int64_t>(64 << 20, 8 * config_.limits().max_message_bytes())));
  builder.SetResourceQuota(quota);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on '", listen_address, "'"));
  }
  address_ = absl::StrCat(listen_address.substr(0, listen_address.rfind(':')), ":", port_);
  ticker_ = std::thread([this] { TickLoop(); });
  return absl::OkStatus();
}

void FederationServer::TickLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(50))) return;
    }
    // With simulator shards (the barrier policy), rounds close in ReportShard, which reports
    // them before the next report can close another; a tick would change nothing anyway.
    if (config_.round().shards() > 0) continue;
    absl::Status status = coordinator_->Tick();
    for (const fl::RoundReport& report : coordinator_->TakeRoundReports()) Report(report);
    if (!status.ok()) {
      log_.Write(base::LogLevel::kError, absl::StrCat("stopping: ", status.ToString()));
      absl::MutexLock lock(&mu_);
      fatal_ = status;
      stopping_ = true;
      return;
    }
  }
}

absl::StatusOr<double> FederationServer::Evaluate() {
  // The published modules, installed on the server's model replica.
  std::vector<std::unique_ptr<peft::PetModule>> attached;
  for (const fl::ModuleSnapshot& m : coordinator_->Modules()) {
    switch (m.spec.role) {
      case fl::ModuleRole::kHead:
        model_->head().parameters().flat_values() = m.values->flat_values();
        break;
      case fl::ModuleRole::kBackbone:
        model_->backbone().parameters().flat_values() = m.values->flat_values();
        break;
      case fl::ModuleRole::kPet: {
        FEDCL_ASSIGN_OR_RETURN(auto pet,
                               peft::PetModule::FromParameters(m.spec.name, m.spec.pet, *m.values));
        FEDCL_RETURN_IF_ERROR(pet->Attach(*model_));
        attached.push_back(std::move(pet));
        break;
      }
      case fl::ModuleRole::kExpert:
      case fl::ModuleRole::kBaseExpert:
        break;  // the replica has no mixture at its blocks: experts are evaluated on devices
      case fl::ModuleRole::kInstancePool:
        break;  // per-instance selection runs on devices only
      case fl::ModuleRole::kClassStatistics:
        break;  // prototypes classify on devices (fed_simple_cil), not through the head
    }
  }
  nn::EvalResult result = nn::Evaluate(*model_, evaluation_->images, evaluation_->labels);
  return result.accuracy;  // `attached` detaches on return
}

void FederationServer::Report(const fl::RoundReport& r) {
  std::optional<double> accuracy;
  if (evaluation_ != nullptr && (r.round + 1) % config_.evaluation().every_rounds() == 0) {
    absl::StatusOr<double> evaluated = Evaluate();
    if (evaluated.ok()) {
      accuracy = *evaluated;
      service_->SetEvaluation(r.round, *evaluated);
    } else {
      log_.Write(base::LogLevel::kWarning,
                 absl::StrCat("evaluation failed: ", evaluated.status().ToString()));
    }
  }
  const std::string line = MetricsLine(r, accuracy);
  const std::string path = base::JoinPath(config_.state_dir(), "metrics.jsonl");
  if (FILE* f = std::fopen(path.c_str(), "a")) {
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
  log_.Write(base::LogLevel::kInfo,
             absl::StrFormat("round %d closed: %d of %d clients, loss %.4f, accuracy %s", r.round,
                             r.participants, r.enrolled, r.mean_loss,
                             accuracy.has_value() ? absl::StrFormat("%.4f", *accuracy) : "null"));
}

absl::Status FederationServer::Wait() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&stopping_));
  }
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (ticker_.joinable()) ticker_.join();
  absl::MutexLock lock(&mu_);
  return fatal_;
}

std::shared_ptr<grpc::Channel> FederationServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(config_.limits().max_message_bytes()));
  args.SetMaxSendMessageSize(static_cast<int>(config_.limits().max_message_bytes()));
  return grpc_server_->InProcessChannel(args);
}

void FederationServer::Shutdown() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

}  // namespace fedcl::server
