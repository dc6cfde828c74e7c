// Shared pieces of the client tests: a tiny federated task (an MLP on 1×8×8 images of 4
// classes, with synthetic IDX data that is easy to learn) and a FederationPort over an
// in-process fl::Coordinator that can inject failures.
#ifndef FEDCL_TESTS_CLIENT_CLIENT_TEST_UTIL_H_
#define FEDCL_TESTS_CLIENT_CLIENT_TEST_UTIL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/base/filesystem.h"
#include "core/device/federation_port.h"
#include "core/fl/coordinator.h"
#include "core/nn/model.h"
#include "core/nn/model_config.h"

namespace fedcl::client::testing {

// An unsigned-byte IDX file with the given dimensions.
std::string EncodeIdx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& values);

// Writes `samples` images (1×8×8) and labels in [0, 4) to <dir>/images.idx and <dir>/labels.idx:
// class c lights up quadrant c, plus noise. Returns the two paths.
std::pair<std::string, std::string> WriteSyntheticIdx(base::FileSystem& fs, const std::string& dir,
                                                      int samples, uint64_t seed);

// The tiny task's model: an MLP backbone (hidden 12, 10) and a linear head, 1×8×8 → 4 classes.
nn::ModelConfig TinyMlpConfig();
std::unique_ptr<nn::Model> TinyMlp(uint64_t seed = 1);

// The serialized ModelCheckpoint of `model` (what DownloadBackbone returns).
std::string BackboneBytes(const nn::Model& model);

// The initial module pool for `model`: its head, and an SSF module on its backbone.
std::vector<fl::StoredModule> InitialModules(nn::Model& model, uint64_t seed = 1);

// A FederationTransport that calls an fl::Coordinator directly (ticking it on every call, so
// deadlines pass as the test's clock moves), with failure injection. Not thread-safe.
class CoordinatorTransport final : public device::FederationPort {
 public:
  CoordinatorTransport(fl::Coordinator& coordinator, std::string backbone, nn::ModelConfig config);

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

  // Failures to inject: each call of that kind first takes the next status off its queue and
  // returns it without reaching the coordinator.
  std::deque<absl::Status> join_failures;
  std::deque<absl::Status> get_work_failures;
  std::deque<absl::Status> submit_failures;
  // The next submission reaches the coordinator, but its answer is "lost": UNAVAILABLE.
  bool lose_next_acknowledgement = false;
  // Runs (once) when the next injected submit failure is returned, e.g. to move the round on.
  std::function<void()> on_next_submit_failure;

  // What the loop did.
  int joins = 0;
  int backbone_downloads = 0;
  int module_downloads = 0;
  int submissions = 0;  // that reached the coordinator
  int proposals = 0;
  int descriptors_attached = 0;                      // AttachDescriptor calls the coordinator took
  int descriptor_downloads = 0;                      // downloads that came with a descriptor
  std::vector<std::vector<fl::ModuleVersion>> held;  // per GetWork call
  std::vector<int64_t> train_rounds;                 // rounds offered with ACTION_TRAIN
  std::vector<int64_t> submitted_rounds;             // rounds of accepted submissions
  std::vector<fl::LocalUpdate> submitted_updates;    // their updates, as the device sent them

 private:
  fl::Coordinator& coordinator_;
  const std::string backbone_;
  device::ServerInfo info_;
};

}  // namespace fedcl::client::testing

#endif  // FEDCL_TESTS_CLIENT_CLIENT_TEST_UTIL_H_
