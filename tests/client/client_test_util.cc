#include "tests/client/client_test_util.h"

#include <utility>

#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/peft/pet_module.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "tests/core/nn/test_models.h"

namespace fedcl::client::testing {

std::string EncodeIdx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values) {
  std::string bytes = {0, 0, 0x08, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>(d >> shift));
  }
  bytes.append(values.begin(), values.end());
  return bytes;
}

std::pair<std::string, std::string> WriteSyntheticIdx(base::FileSystem& fs, const std::string& dir,
                                                      int samples, uint64_t seed) {
  base::Rng rng(seed);
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;
  for (int i = 0; i < samples; ++i) {
    const int label = i % 4;
    labels.push_back(static_cast<uint8_t>(label));
    for (int y = 0; y < 8; ++y) {
      for (int x = 0; x < 8; ++x) {
        const bool lit = (y / 4) * 2 + (x / 4) == label;
        images.push_back(static_cast<uint8_t>((lit ? 180 : 20) + rng.UniformInt(60)));
      }
    }
  }
  const std::string images_path = base::JoinPath(dir, "images.idx");
  const std::string labels_path = base::JoinPath(dir, "labels.idx");
  FEDCL_CHECK_OK(fs.CreateDirectories(dir));
  const uint32_t n = static_cast<uint32_t>(samples);
  FEDCL_CHECK_OK(fs.WriteFileAtomically(images_path, EncodeIdx({n, 8, 8}, images)));
  FEDCL_CHECK_OK(fs.WriteFileAtomically(labels_path, EncodeIdx({n}, labels)));
  return {images_path, labels_path};
}

nn::ModelConfig TinyMlpConfig() { return nn::testing::TinyConfig(nn::BackboneKind::kMlp); }

std::unique_ptr<nn::Model> TinyMlp(uint64_t seed) {
  absl::StatusOr<std::unique_ptr<nn::Model>> model = nn::Model::Create(TinyMlpConfig(), seed);
  FEDCL_CHECK_OK(model.status());
  return *std::move(model);
}

std::string BackboneBytes(const nn::Model& model) {
  v1::ModelCheckpoint checkpoint;
  FEDCL_CHECK_OK(proto::ToCheckpointProto(model, {}, {}, &checkpoint));
  return checkpoint.SerializeAsString();
}

std::vector<fl::StoredModule> InitialModules(nn::Model& model, uint64_t seed) {
  std::vector<fl::StoredModule> modules(2);
  modules[0].spec = {"head", fl::ModuleRole::kHead, {}};
  modules[0].values = model.head().parameters();
  modules[0].values.SetAllTrainable(true);
  modules[1].spec = {"ssf", fl::ModuleRole::kPet, {}};
  base::Rng rng(seed);
  absl::StatusOr<std::unique_ptr<peft::PetModule>> ssf =
      peft::PetModule::Create("ssf", modules[1].spec.pet, model.backbone(), rng);
  FEDCL_CHECK_OK(ssf.status());
  modules[1].values = (*ssf)->parameters();
  modules[1].values.SetAllTrainable(true);
  return modules;
}

CoordinatorTransport::CoordinatorTransport(fl::Coordinator& coordinator, std::string backbone,
                                           nn::ModelConfig config)
    : coordinator_(coordinator), backbone_(std::move(backbone)) {
  info_.protocol = std::string(device::kProtocol);
  info_.model = config;
  info_.backbone_digest = proto::Sha256Hex(backbone_);
  info_.max_message_bytes = 4 << 20;
  info_.chunk_bytes = 1 << 20;
}

absl::StatusOr<device::JoinResult> CoordinatorTransport::Join(fl::ClientId client,
                                                              absl::string_view software) {
  if (!join_failures.empty()) {
    absl::Status status = join_failures.front();
    join_failures.pop_front();
    return status;
  }
  ++joins;
  FEDCL_ASSIGN_OR_RETURN(int64_t round, coordinator_.Enroll(client));
  return device::JoinResult{client, round, info_};
}

absl::StatusOr<fl::WorkAssignment> CoordinatorTransport::GetWork(
    fl::ClientId client, absl::Span<const fl::ModuleVersion> held_versions) {
  if (!get_work_failures.empty()) {
    absl::Status status = get_work_failures.front();
    get_work_failures.pop_front();
    return status;
  }
  FEDCL_RETURN_IF_ERROR(coordinator_.Tick());
  held.emplace_back(held_versions.begin(), held_versions.end());
  FEDCL_ASSIGN_OR_RETURN(fl::WorkAssignment work, coordinator_.GetWork(client, held_versions));
  if (work.action == fl::WorkAssignment::Action::kTrain) train_rounds.push_back(work.round);
  return work;
}

absl::StatusOr<std::string> CoordinatorTransport::DownloadBackbone(fl::ClientId client) {
  ++backbone_downloads;
  return backbone_;
}

absl::StatusOr<device::DownloadedModule> CoordinatorTransport::DownloadModule(
    fl::ClientId client, const std::string& name, int64_t version, bool with_descriptor) {
  FEDCL_ASSIGN_OR_RETURN(fl::ModuleSnapshot snapshot, coordinator_.GetModule(name, version));
  ++module_downloads;
  device::DownloadedModule module{snapshot.spec, snapshot.version, *snapshot.values, std::nullopt};
  if (with_descriptor && snapshot.descriptor != nullptr) {
    module.descriptor = *snapshot.descriptor;
    ++descriptor_downloads;
  }
  return module;
}

absl::StatusOr<fl::SubmitResult> CoordinatorTransport::SubmitUpdate(fl::ClientId client,
                                                                    int64_t round,
                                                                    const fl::LocalUpdate& update,
                                                                    int64_t chunk_bytes) {
  FEDCL_RETURN_IF_ERROR(coordinator_.Tick());
  if (!submit_failures.empty()) {
    absl::Status status = submit_failures.front();
    submit_failures.pop_front();
    if (on_next_submit_failure) {
      std::function<void()> hook = std::move(on_next_submit_failure);
      on_next_submit_failure = nullptr;
      hook();
    }
    return status;
  }
  fl::LocalUpdate copy = update;  // Submit may scale the values in place
  FEDCL_ASSIGN_OR_RETURN(fl::SubmitResult result,
                         coordinator_.Submit(fl::ToSubmission(copy, client, round)));
  ++submissions;
  if (!result.duplicate) {
    submitted_rounds.push_back(round);
    submitted_updates.push_back(update);
  }
  if (lose_next_acknowledgement) {
    lose_next_acknowledgement = false;
    return absl::UnavailableError("connection lost before the answer");
  }
  return result;
}

absl::Status CoordinatorTransport::Leave(fl::ClientId client, bool permanent) {
  return coordinator_.Leave(client, permanent);
}

absl::StatusOr<fl::ProposalResult> CoordinatorTransport::ProposeModule(
    const fl::ModuleProposal& proposal) {
  ++proposals;
  return coordinator_.ProposeModule(proposal);
}

absl::StatusOr<bool> CoordinatorTransport::AttachDescriptor(fl::ClientId client,
                                                            const std::string& name,
                                                            const nn::ParameterSet& descriptor) {
  FEDCL_ASSIGN_OR_RETURN(bool attached, coordinator_.AttachDescriptor(client, name, descriptor));
  descriptors_attached += attached ? 1 : 0;
  return attached;
}

}  // namespace fedcl::client::testing
