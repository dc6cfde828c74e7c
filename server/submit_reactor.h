// One SubmitUpdate stream: the header is checked (authentication, layout, size) as soon as it
// arrives; the data is then staged in one buffer once an upload slot is free, checked against the
// header's size and CRC when the client half-closes, and submitted to the coordinator. A stream
// that is cancelled, cut short or malformed is refused and nothing is folded.
//
// The method is served raw (grpc::ByteBuffer): the header is parsed by protobuf, but a data
// chunk, exactly one `bytes data = 2` field, is copied from gRPC's slices straight into the
// staging buffer. Parsing it as a message would first copy every chunk into a string of its own.
#ifndef FEDCL_SERVER_SUBMIT_REACTOR_H_
#define FEDCL_SERVER_SUBMIT_REACTOR_H_

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/fl/round_types.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "server/work_queue.h"

namespace fedcl::server {

class FederationService;

class SubmitReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  SubmitReactor(FederationService& service, grpc::CallbackServerContext* context,
                grpc::ByteBuffer* response);

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
  grpc::ByteBuffer* const response_;
  grpc::ByteBuffer chunk_;
  v1::UpdateHeader header_;
  bool have_header_ = false;
  std::vector<std::vector<fl::TensorSpec>> layouts_;
  std::vector<int64_t> sizes_;     // floats per module
  StagingBuffers::Buffer buffer_;  // holds the update while it arrives; back to the pool after
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
