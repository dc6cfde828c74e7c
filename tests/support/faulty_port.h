// A FederationPort decorator for tests: passes every call to another port, counting what it
// passes, and injects failures — statuses returned before a call reaches the server, and lost
// replies (the server handles the call, the device sees UNAVAILABLE).
#ifndef FEDCL_TESTS_SUPPORT_FAULTY_PORT_H_
#define FEDCL_TESTS_SUPPORT_FAULTY_PORT_H_

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "core/device/federation_port.h"

namespace fedcl::testing {

class FaultyPort final : public device::FederationPort {
 public:
  explicit FaultyPort(device::FederationPort& inner) : inner_(inner) {}

  absl::StatusOr<device::JoinResult> Join(fl::ClientId client, absl::string_view software) override;
  absl::StatusOr<fl::WorkAssignment> GetWork(fl::ClientId client,
                                             absl::Span<const fl::ModuleVersion> held) override;
  absl::StatusOr<std::string> DownloadBackbone(fl::ClientId client) override;
  absl::StatusOr<device::DownloadedModule> DownloadModule(fl::ClientId client,
                                                          const std::string& name, int64_t version,
                                                          bool with_descriptor = false) override;
  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                const fl::LocalUpdate& update,
                                                int64_t chunk_bytes) override;
  absl::Status Leave(fl::ClientId client, bool permanent) override;
  absl::StatusOr<fl::ProposalResult> ProposeModule(const fl::ModuleProposal& proposal) override;
  absl::StatusOr<bool> AttachDescriptor(fl::ClientId client, const std::string& name,
                                        const nn::ParameterSet& descriptor) override;

  // Each call of a kind first takes the next status off its queue and returns it without
  // reaching the server.
  std::deque<absl::Status> join_failures, get_work_failures, download_failures, submit_failures;
  // The next `lose_acknowledgements` submissions reach the server, but their answers are lost:
  // the device sees UNAVAILABLE.
  int lose_acknowledgements = 0;
  // Called before each call reaches the server (e.g. to tick a coordinator on a test clock).
  std::function<void()> before_call;

  // What passed through.
  int joins = 0, module_downloads = 0, submissions = 0, proposals = 0, descriptors_attached = 0;
  std::vector<std::vector<fl::ModuleVersion>> held;  // per GetWork call
  std::vector<int64_t> submitted_rounds;             // rounds of submissions the server took
  std::vector<fl::LocalUpdate> submitted_updates;    // their contents
  std::vector<bool> duplicates;                      // their acknowledgements' duplicate flags

 private:
  void Before() {
    if (before_call) before_call();
  }
  device::FederationPort& inner_;
};

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_SUPPORT_FAULTY_PORT_H_
