// One SubmitUpdate stream: the header is checked (authentication, layout, size) as soon as it
// arrives; the data is then staged in one buffer once an upload slot is free, checked against the
// header's size and CRC when the client half-closes, and submitted to the coordinator on a worker
// thread. A stream that is cancelled, cut short or malformed is refused and nothing is folded.
#ifndef FEDCL_SERVER_SUBMIT_REACTOR_H_
#define FEDCL_SERVER_SUBMIT_REACTOR_H_

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/fl/round_types.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"

namespace fedcl::server {

class FederationService;

class SubmitReactor final : public grpc::ServerReadReactor<v1::UpdateChunk> {
 public:
  SubmitReactor(FederationService& service, grpc::CallbackServerContext* context,
                v1::SubmitUpdateResponse* response);

  void OnReadDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  absl::Status AcceptHeader();
  absl::Status AcceptData();
  void OnSlot();
  void Complete();
  void Fail(const absl::Status& status);

  FederationService& service_;
  grpc::CallbackServerContext* const context_;
  v1::SubmitUpdateResponse* const response_;
  v1::UpdateChunk chunk_;
  v1::UpdateHeader header_;
  bool have_header_ = false;
  std::vector<std::vector<fl::TensorSpec>> layouts_;
  std::vector<int64_t> sizes_;  // floats per module
  std::vector<float> buffer_;
  int64_t expected_bytes_ = 0;
  int64_t received_bytes_ = 0;
  uint32_t crc_ = 0;

  absl::Mutex mu_;
  bool waiting_for_slot_ ABSL_GUARDED_BY(mu_) = false;
  bool holds_slot_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_SUBMIT_REACTOR_H_
