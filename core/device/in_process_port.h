// A FederationPort over an fl::Coordinator in the same process: the simulators' devices and the
// tests talk to the server's own code with no network. The coordinator's round policy decides
// when rounds close (the in-process simulators configure a barrier and report); this port never
// ticks or closes anything.
//
//   device::InProcessPort port(coordinator, server_info, backbone_bytes);
//   device::DeviceSession session(options, learner, {.port = &port, ...});
//
// Thread-safe as the coordinator is: sessions on several threads may share one port.
#ifndef FEDCL_CORE_DEVICE_IN_PROCESS_PORT_H_
#define FEDCL_CORE_DEVICE_IN_PROCESS_PORT_H_

#include <string>

#include "core/device/federation_port.h"
#include "core/fl/coordinator.h"

namespace fedcl::device {

class InProcessPort final : public FederationPort {
 public:
  // `coordinator` must outlive the port. `info` is what Join reports; `backbone` what
  // DownloadBackbone returns (the host's serialized checkpoint; empty: Unimplemented).
  InProcessPort(fl::Coordinator& coordinator, ServerInfo info, std::string backbone = {});

  absl::StatusOr<JoinResult> Join(fl::ClientId client, absl::string_view software) override;
  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client,
                                             absl::Span<const fl::ModuleVersion> held) override;
  absl::StatusOr<std::string> DownloadBackbone(fl::ClientId client) override;
  absl::StatusOr<DownloadedModule> DownloadModule(fl::ClientId client, const std::string& name,
                                                  int64_t version,
                                                  bool with_descriptor = false) override;
  // Submits a copy of `update` (the coordinator may scale a clipped update in place).
  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                const fl::LocalUpdate& update,
                                                int64_t chunk_bytes) override;
  absl::Status Leave(fl::ClientId client, bool permanent) override;
  absl::StatusOr<fl::ProposalResult> ProposeModule(const fl::ModuleProposal& proposal) override;
  absl::StatusOr<bool> AttachDescriptor(fl::ClientId client, const std::string& name,
                                        const nn::ParameterSet& descriptor) override;

  fl::Coordinator& coordinator() { return coordinator_; }

 private:
  fl::Coordinator& coordinator_;
  const ServerInfo info_;
  const std::string backbone_;
};

}  // namespace fedcl::device

#endif  // FEDCL_CORE_DEVICE_IN_PROCESS_PORT_H_
