// client::Device: joining, the server's backbone, and the learner and session built on it (the
// contract is in device.h).
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/device.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "proto/device_state.h"
#include "proto/digest.h"
#include "proto/envelope.h"

namespace fedcl::client {
namespace {

constexpr char kBackboneCacheName[] = "backbone.ckpt";

std::string ShortDigest(absl::string_view digest) {
  return std::string(digest.substr(0, 12)) + (digest.size() > 12 ? "..." : "");
}

// The checkpoint payload in an envelope file and its hex SHA-256 (what the server's digest covers).
absl::StatusOr<std::pair<std::string, std::string>> ReadCheckpoint(const base::FileSystem& fs,
                                                                   const std::string& path,
                                                                   int64_t max_bytes) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs.ReadFile(path, static_cast<uint64_t>(max_bytes) +
                                                                  proto::kEnvelopeHeaderSize));
  v1::ModelCheckpoint message;
  FEDCL_RETURN_IF_ERROR(
      proto::DecodeEnvelope(bytes, path, proto::PayloadKind::kModelCheckpoint, &message));
  std::string payload = bytes.substr(proto::kEnvelopeHeaderSize);
  std::string digest = proto::Sha256Hex(absl::string_view(payload));
  return std::make_pair(std::move(payload), std::move(digest));
}

}  // namespace

absl::Status Device::Prepare() {
  const fl::ClientId id = options_.client_id;
  FEDCL_ASSIGN_OR_RETURN(device::JoinResult joined,
                         Retry("joining", [&] { return port_->Join(id, options_.software); }));
  if (joined.server.protocol != device::kProtocol) {
    return absl::FailedPreconditionError(absl::StrCat("the server speaks '", joined.server.protocol,
                                                      "', not '", device::kProtocol, "'"));
  }
  // Chunks come with a few bytes of framing; they must fit in the messages we accept.
  if (joined.server.chunk_bytes <= 0 ||
      joined.server.chunk_bytes + 1024 > options_.server.max_message_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server sends chunks of ", joined.server.chunk_bytes,
                     " bytes; this client accepts messages of at most ",
                     options_.server.max_message_bytes, " bytes"));
  }
  if (joined.client_id != id) {
    return absl::FailedPreconditionError(
        absl::StrCat("joined as client ", id, " but the server answered for ", joined.client_id));
  }
  Log(base::LogLevel::kInfo, absl::StrCat("joined: enrolled at round ", joined.enrolled_round));
  Count([&](DeviceStats& s) { s.enrolled_round = joined.enrolled_round; });
  server_ = joined.server;
  const std::string& digest = joined.server.backbone_digest;
  FEDCL_ASSIGN_OR_RETURN(std::string backbone, BackboneBytes(digest));
  FEDCL_RETURN_IF_ERROR(BuildLearner(backbone, digest));
  return session_->Joined(joined);  // the session need not join again
}

absl::StatusOr<std::string> Device::BackboneBytes(const std::string& digest) {
  const int64_t max_bytes = options_.server.max_download_bytes;
  if (!options_.backbone_checkpoint.empty()) {
    FEDCL_ASSIGN_OR_RETURN(auto file, ReadCheckpoint(fs_, options_.backbone_checkpoint, max_bytes));
    if (file.second != digest) {
      return absl::FailedPreconditionError(
          absl::StrCat("backbone checkpoint '", options_.backbone_checkpoint,
                       "' is not the server's backbone (SHA-256 ", ShortDigest(file.second),
                       " where the server announces ", ShortDigest(digest),
                       "); leave the backbone checkpoint unset to download it"));
    }
    Log(base::LogLevel::kInfo, absl::StrCat("backbone from '", options_.backbone_checkpoint, "'"));
    return std::move(file.first);
  }
  const std::string cache = base::JoinPath(options_.state_dir, kBackboneCacheName);
  if (fs_.Exists(cache)) {
    absl::StatusOr<std::pair<std::string, std::string>> file =
        ReadCheckpoint(fs_, cache, max_bytes);
    if (file.ok() && file->second == digest) return std::move(file->first);
    Log(base::LogLevel::kInfo,
        file.ok() ? std::string("the cached backbone is not the server's current one")
                  : absl::StrCat("the cached backbone is unusable: ", file.status().message()));
  }
  const fl::ClientId id = options_.client_id;
  FEDCL_ASSIGN_OR_RETURN(
      std::string bytes, Retry("downloading the backbone", [&]() -> absl::StatusOr<std::string> {
        FEDCL_ASSIGN_OR_RETURN(std::string downloaded, port_->DownloadBackbone(id));
        const std::string got = proto::Sha256Hex(downloaded);
        if (got != digest) {
          return absl::DataLossError(absl::StrCat("the downloaded backbone has SHA-256 ",
                                                  ShortDigest(got), "; the server announced ",
                                                  ShortDigest(digest)));
        }
        return downloaded;
      }));
  Count([](DeviceStats& s) { ++s.backbone_downloads; });
  Log(base::LogLevel::kInfo, absl::StrCat("downloaded the backbone (", bytes.size(), " bytes)"));
  // The cache only saves a download next time; failing to write it is not fatal.
  v1::ModelCheckpoint message;
  absl::Status cached = message.ParseFromString(bytes)
                            ? fs_.CreateDirectories(options_.state_dir)
                            : absl::DataLossError("the backbone does not parse");
  if (cached.ok()) {
    cached = proto::WriteEnvelope(fs_, cache, proto::PayloadKind::kModelCheckpoint, message);
  }
  if (!cached.ok()) {
    Log(base::LogLevel::kWarning, absl::StrCat("cannot cache the backbone: ", cached.message()));
  }
  return bytes;
}

absl::Status Device::BuildLearner(const std::string& backbone_bytes, const std::string& digest) {
  v1::ModelCheckpoint message;
  if (!message.ParseFromString(backbone_bytes)) {
    return absl::InvalidArgumentError("the server's backbone does not parse as a ModelCheckpoint");
  }
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint loaded,
                         proto::FromCheckpointProto(message, "the server's backbone"));
  loaded.modules.clear();  // detach any stored module before the model moves
  FEDCL_RETURN_IF_ERROR(CheckDataFits(loaded.model->config()));
  cl::LearnerOptions learner_options;
  learner_options.method = options_.method;
  learner_options.method_options = options_.method_options;
  learner_options.learning_rate = options_.learning_rate;
  learner_options.module_memory_budget_bytes = options_.module_memory_budget_bytes;
  learner_options.task_at_shift = true;  // no task boundaries: a detected shift starts one
  learner_options.seed = options_.seed;
  std::lock_guard<std::mutex> lock(session_mu_);
  session_.reset();
  FEDCL_ASSIGN_OR_RETURN(learner_, cl::Learner::Create(std::move(loaded.model), learner_options));
  backbone_digest_ = digest;
  device::SessionOptions session_options;
  session_options.client_id = options_.client_id;
  session_options.software = options_.software;
  // A recipe device's next round starts from the server's values (FedAvg): learning the
  // server did not take is dropped. A continual device keeps it for a later round.
  session_options.unsent = options_.recipe() ? device::SessionOptions::Unsent::kDrop
                                             : device::SessionOptions::Unsent::kKeep;
  device::SessionEnvironment environment;
  environment.port = port_.get();
  environment.mu = &session_mu_;
  environment.save = [this] { return SaveLocked(); };
  environment.log = &log_;
  environment.cancelled = [this] { return ShouldHalt(); };
  session_ = std::make_unique<device::DeviceSession>(session_options, *learner_, environment);
  if (stored_.has_value() && stored_->backbone_digest() == digest) {
    if (absl::Status s = proto::RestoreDeviceState(*stored_, *learner_, *session_); !s.ok()) {
      Log(base::LogLevel::kWarning, absl::StrCat("the stored device state does not fit (",
                                                 s.message(), "); starting afresh"));
    }
  } else if (stored_.has_value() && !stored_->backbone_digest().empty()) {
    Log(base::LogLevel::kWarning,
        "the server's backbone has changed: the modules held for the old one are dropped");
  }
  return SaveLocked();
}

absl::Status Device::CheckDataFits(const nn::ModelConfig& config) const {
  if (config.image_channels != data_.channels || config.image_height != data_.height ||
      config.image_width != data_.width) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the local data has %dx%dx%d images; the server's model takes %dx%dx%d", data_.channels,
        data_.height, data_.width, config.image_channels, config.image_height, config.image_width));
  }
  for (int32_t label : data_.labels) {
    if (label >= config.num_classes) {
      return absl::FailedPreconditionError(absl::StrCat("the local data has label ", label,
                                                        "; the server's model has ",
                                                        config.num_classes, " classes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace fedcl::client
