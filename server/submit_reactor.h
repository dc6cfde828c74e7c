// One SubmitUpdate stream. The header is checked as soon as it arrives, before the upload waits
// for anything or allocates anything: authentication, the training report's numbers, every
// module's layout against the pooled module (element counts computed without overflow), the
// declared size against the layouts and the pool. The upload then asks the service's UploadSlots
// for a slot (its client's share permitting), and once admitted stages its data in one buffer,
// copying each chunk from gRPC's slices exactly once with the CRC computed in the same pass. When
// the client half-closes, the size and CRC are checked, compressed deltas are decoded in the same
// buffer (proto::DecodeUpdatePayload), and the update goes to the coordinator.
//
// Departure from issue 18's "decoded straight into the exact fixed-point accumulators": a
// compressed delta is decoded into the floats the fold reads, as a float32 one is staged. The
// coordinator must see the whole delta before it folds any of it (its norm for the bound and for
// clipping, which scales every value; finiteness; the magnitude budget), so no update can be
// folded as its bytes arrive, compressed or not.
// A stream that is cancelled, cut short, malformed, or that stalls past its idle or total deadline
// is refused and nothing is folded; whatever ends it, its slot and staging buffer go back at once.
//
// The method is served raw (grpc::ByteBuffer): the header is parsed by protobuf, but a data
// chunk, exactly one `bytes data = 2` field, is copied from gRPC's slices straight into the
// staging buffer. Parsing it as a message would first copy every chunk into a string of its own.
//
// Lifetime: the reactor is shared (gRPC's reference until OnDone, UploadSlots' while entered), so
// a slot callback never meets a deleted reactor. Exactly one path finishes the call; it is chosen
// under the reactor's lock (phase_ becomes kFinished).
#ifndef FEDCL_SERVER_SUBMIT_REACTOR_H_
#define FEDCL_SERVER_SUBMIT_REACTOR_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/fl/round_types.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "proto/update_codec.h"
#include "server/upload_slots.h"
#include "server/work_queue.h"

namespace fedcl::server {

class FederationService;

class SubmitReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer>,
                            public UploadSlots::Holder,
                            public std::enable_shared_from_this<SubmitReactor> {
 public:
  // A new reactor for one call; gRPC owns it until OnDone.
  static SubmitReactor* Start(FederationService& service, grpc::CallbackServerContext* context,
                              grpc::ByteBuffer* response);
  SubmitReactor(FederationService& service, grpc::CallbackServerContext* context,
                grpc::ByteBuffer* response);

  void OnReadDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // UploadSlots::Holder.
  void OnAdmitted() override;
  bool OnExpired(const absl::Status& why) override;

 private:
  enum class Phase {
    kHeader,      // reading the header
    kWaiting,     // entered in the upload slots, waiting for one
    kReceiving,   // holding a slot, staging data
    kSubmitting,  // all data in; the coordinator has it
    kFinished,    // the call's status is decided (Finish called or about to be)
  };

  void OnHeader();
  absl::Status AcceptHeader();
  absl::Status AcceptData() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnData();
  void OnHalfClose();
  void Submit();
  // Ends the call with `status` after the caller moved phase_ to kFinished: returns the staging
  // buffer, leaves the upload slots (freeing the slot) and finishes.
  void End(const absl::Status& status, StagingBuffers::Buffer buffer);
  // Where the data go in the staging buffer (bytes from its start), its size in floats, and the
  // address data are staged at.
  size_t DataOffset() const;
  size_t StagedFloats() const;
  char* StagedBytes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  FederationService& service_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_;
  std::shared_ptr<SubmitReactor> self_;  // gRPC's reference, dropped in OnDone
  grpc::ByteBuffer chunk_;
  v1::UpdateHeader header_;
  proto::UpdateLayout layout_;  // what the header says the bytes hold
  int64_t expected_bytes_ = 0;
  int64_t received_bytes_ = 0;
  uint32_t crc_ = 0;

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kHeader;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // Holds the update while it arrives (kReceiving) and while it is submitted (kSubmitting).
  StagingBuffers::Buffer buffer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_SUBMIT_REACTOR_H_
