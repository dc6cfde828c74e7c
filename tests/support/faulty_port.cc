#include "tests/support/faulty_port.h"

#include "core/base/status_macros.h"

namespace fedcl::testing {
namespace {

// The next injected failure of a queue, if any.
std::optional<absl::Status> Take(std::deque<absl::Status>& failures) {
  if (failures.empty()) return std::nullopt;
  absl::Status status = failures.front();
  failures.pop_front();
  return status;
}

}  // namespace

absl::StatusOr<device::JoinResult> FaultyPort::Join(fl::ClientId client,
                                                    absl::string_view software) {
  if (auto failure = Take(join_failures)) return *failure;
  Before();
  FEDCL_ASSIGN_OR_RETURN(device::JoinResult joined, inner_.Join(client, software));
  ++joins;
  return joined;
}

absl::StatusOr<fl::WorkAssignment> FaultyPort::GetWork(fl::ClientId client,
                                                       absl::Span<const fl::ModuleVersion> h) {
  if (auto failure = Take(get_work_failures)) return *failure;
  Before();
  held.emplace_back(h.begin(), h.end());
  return inner_.GetWork(client, h);
}

absl::StatusOr<std::string> FaultyPort::DownloadBackbone(fl::ClientId client) {
  Before();
  return inner_.DownloadBackbone(client);
}

absl::StatusOr<device::DownloadedModule> FaultyPort::DownloadModule(fl::ClientId client,
                                                                    const std::string& name,
                                                                    int64_t version,
                                                                    bool with_descriptor) {
  if (auto failure = Take(download_failures)) return *failure;
  Before();
  FEDCL_ASSIGN_OR_RETURN(device::DownloadedModule module,
                         inner_.DownloadModule(client, name, version, with_descriptor));
  ++module_downloads;
  return module;
}

absl::StatusOr<fl::SubmitResult> FaultyPort::SubmitUpdate(fl::ClientId client, int64_t round,
                                                          const fl::LocalUpdate& update,
                                                          int64_t chunk_bytes) {
  if (auto failure = Take(submit_failures)) return *failure;
  Before();
  absl::StatusOr<fl::SubmitResult> result = inner_.SubmitUpdate(client, round, update, chunk_bytes);
  if (result.ok()) {
    ++submissions;
    submitted_rounds.push_back(round);
    submitted_updates.push_back(update);
    duplicates.push_back(result->duplicate);
  }
  if (lose_acknowledgements > 0) {
    --lose_acknowledgements;
    return absl::UnavailableError("the acknowledgement was lost on the way back");
  }
  return result;
}

absl::Status FaultyPort::Leave(fl::ClientId client, bool permanent) {
  Before();
  return inner_.Leave(client, permanent);
}

absl::StatusOr<fl::ProposalResult> FaultyPort::ProposeModule(const fl::ModuleProposal& proposal) {
  Before();
  ++proposals;
  return inner_.ProposeModule(proposal);
}

absl::StatusOr<bool> FaultyPort::AttachDescriptor(fl::ClientId client, const std::string& name,
                                                  const nn::ParameterSet& descriptor) {
  Before();
  FEDCL_ASSIGN_OR_RETURN(bool attached, inner_.AttachDescriptor(client, name, descriptor));
  descriptors_attached += attached ? 1 : 0;
  return attached;
}

}  // namespace fedcl::testing
