#include "core/device/federation_port.h"

#include "absl/strings/str_cat.h"

namespace fedcl::device {

absl::StatusOr<fl::ProposalResult> FederationPort::ProposeModule(
    const fl::ModuleProposal& proposal) {
  return absl::UnimplementedError(
      absl::StrCat("this port cannot propose a module for block ", proposal.block));
}

absl::StatusOr<bool> FederationPort::AttachDescriptor(fl::ClientId client, const std::string& name,
                                                      const nn::ParameterSet& descriptor) {
  return absl::UnimplementedError(
      absl::StrCat("this port cannot attach a descriptor to '", name, "'"));
}

bool IsTransient(const absl::Status& status) {
  // The call may have failed on the way, or its reply may have been lost: the same call may
  // succeed later, and for a submission the server may already hold it (resubmitting the same
  // update for the same round is safe: it is idempotent).
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

}  // namespace fedcl::device
