#include "core/device/in_process_port.h"

#include <utility>

#include "core/base/status_macros.h"

namespace fedcl::device {

InProcessPort::InProcessPort(fl::Coordinator& coordinator, ServerInfo info, std::string backbone)
    : coordinator_(coordinator), info_(std::move(info)), backbone_(std::move(backbone)) {}

absl::StatusOr<JoinResult> InProcessPort::Join(fl::ClientId client, absl::string_view software) {
  FEDCL_ASSIGN_OR_RETURN(int64_t round, coordinator_.Enroll(client));
  return JoinResult{client, round, info_};
}

absl::StatusOr<fl::WorkAssignment> InProcessPort::GetWork(
    fl::ClientId client, absl::Span<const fl::ModuleVersion> held) {
  return coordinator_.GetWork(client, held);
}

absl::StatusOr<std::string> InProcessPort::DownloadBackbone(fl::ClientId client) {
  if (backbone_.empty()) {
    return absl::UnimplementedError("this in-process server has no backbone to download");
  }
  return backbone_;
}

absl::StatusOr<DownloadedModule> InProcessPort::DownloadModule(fl::ClientId client,
                                                               const std::string& name,
                                                               int64_t version,
                                                               bool with_descriptor) {
  FEDCL_ASSIGN_OR_RETURN(fl::ModuleSnapshot snapshot, coordinator_.GetModule(name, version));
  DownloadedModule module{snapshot.spec, snapshot.version, *snapshot.values, std::nullopt};
  if (with_descriptor && snapshot.descriptor != nullptr) module.descriptor = *snapshot.descriptor;
  return module;
}

absl::StatusOr<fl::SubmitResult> InProcessPort::SubmitUpdate(fl::ClientId client, int64_t round,
                                                             const fl::LocalUpdate& update,
                                                             int64_t chunk_bytes) {
  fl::LocalUpdate copy = update;
  return coordinator_.Submit(fl::ToSubmission(copy, client, round));
}

absl::Status InProcessPort::Leave(fl::ClientId client, bool permanent) {
  return coordinator_.Leave(client, permanent);
}

absl::StatusOr<fl::ProposalResult> InProcessPort::ProposeModule(
    const fl::ModuleProposal& proposal) {
  return coordinator_.ProposeModule(proposal);
}

absl::StatusOr<bool> InProcessPort::AttachDescriptor(fl::ClientId client, const std::string& name,
                                                     const nn::ParameterSet& descriptor) {
  return coordinator_.AttachDescriptor(client, name, descriptor);
}

}  // namespace fedcl::device
