#include "server/submit_reactor.h"

#include <algorithm>
#include <new>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "core/fl/update_validation.h"
#include "proto/update_codec.h"
#include "server/federation_service.h"
#include "server/grpc_status.h"

namespace fedcl::server {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "float32 update bytes are little-endian and are copied as is");

}  // namespace

SubmitReactor* SubmitReactor::Start(FederationService& service,
                                    grpc::CallbackServerContext* context,
                                    grpc::ByteBuffer* response) {
  auto reactor = std::make_shared<SubmitReactor>(service, context, response);
  reactor->self_ = reactor;
  reactor->StartRead(&reactor->chunk_);
  return reactor.get();
}

SubmitReactor::SubmitReactor(FederationService& service, grpc::CallbackServerContext* context,
                             grpc::ByteBuffer* response)
    : service_(service), context_(context), response_(response) {}

// A float32 update is staged as the floats it is. A compressed one is staged behind the floats it
// decodes to, which the same buffer holds in front (whole floats, so the bytes start aligned).
size_t SubmitReactor::DataOffset() const {
  return layout_.compressed ? static_cast<size_t>(layout_.total_values) * sizeof(float) : 0;
}

size_t SubmitReactor::StagedFloats() const {
  const size_t data_floats =
      (static_cast<size_t>(expected_bytes_) + sizeof(float) - 1) / sizeof(float);
  return DataOffset() / sizeof(float) + data_floats;
}

char* SubmitReactor::StagedBytes() {
  return reinterpret_cast<char*>(buffer_.data.get()) + DataOffset();
}

void SubmitReactor::End(const absl::Status& status, StagingBuffers::Buffer buffer) {
  service_.staging().Return(std::move(buffer));  // first, for the upload the slot goes to next
  service_.upload_slots().Leave(this);
  Finish(ToGrpcStatus(status));
}

absl::Status SubmitReactor::AcceptHeader() {
  v1::UpdateChunk message;
  grpc::Status parsed = grpc::SerializationTraits<v1::UpdateChunk>::Deserialize(&chunk_, &message);
  if (!parsed.ok() || message.part_case() != v1::UpdateChunk::kHeader) {
    return absl::InvalidArgumentError("the first message of an update must be its header");
  }
  header_ = std::move(*message.mutable_header());
  FEDCL_RETURN_IF_ERROR(service_.Authorize(context_, header_.client_id()));
  const std::vector<fl::ModuleSnapshot> pool = service_.coordinator().Modules();
  FEDCL_ASSIGN_OR_RETURN(layout_, proto::DecodeUpdateHeader(header_, pool));
  expected_bytes_ = layout_.total_bytes;
  return absl::OkStatus();
}

void SubmitReactor::OnHeader() {
  absl::Status status = AcceptHeader();
  if (status.ok()) {
    {
      absl::MutexLock lock(&mu_);
      if (phase_ != Phase::kHeader) return;
      phase_ = Phase::kWaiting;  // from here on OnCancel finishes the call
    }
    status = service_.upload_slots().Enter(header_.client_id(), shared_from_this());
    if (status.ok()) {
      bool cancelled_meanwhile;
      {
        absl::MutexLock lock(&mu_);
        cancelled_meanwhile = phase_ == Phase::kFinished;
      }
      // OnCancel finished the call before we were entered: take the entry back out.
      if (cancelled_meanwhile) service_.upload_slots().Leave(this);
      return;  // OnAdmitted runs when a slot is ours
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kFinished) return;
    phase_ = Phase::kFinished;
  }
  End(status, {});
}

// Runs when an upload slot is ours (possibly on the thread of the upload that released it).
void SubmitReactor::OnAdmitted() {
  StagingBuffers::Buffer buffer;
  absl::Status status;
  try {
    buffer = service_.staging().Take(StagedFloats());
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError(
        absl::StrCat("no memory to stage an update of ", expected_bytes_, " bytes; retry later"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kWaiting && status.ok()) {
      phase_ = Phase::kReceiving;
      buffer_ = std::move(buffer);
      StartRead(&chunk_);  // its completion runs on another thread, after we unlock
      return;
    }
    if (phase_ == Phase::kWaiting) phase_ = Phase::kFinished;  // no memory
  }
  if (!status.ok()) return End(status, std::move(buffer));
  // Finished while waiting (cancelled): the slot is not needed.
  service_.staging().Return(std::move(buffer));
  service_.upload_slots().Leave(this);
}

absl::Status SubmitReactor::AcceptData() {
  std::vector<grpc::Slice> slices;
  if (!chunk_.Dump(&slices).ok()) return absl::InternalError("cannot read the chunk's bytes");
  // The chunk's first bytes, gathered across slices: its tag and length (proto/update_codec.h).
  std::string prefix;
  for (const grpc::Slice& s : slices) {
    prefix.append(reinterpret_cast<const char*>(s.begin()),
                  std::min<size_t>(s.size(), proto::kDataChunkPrefixBytes - prefix.size()));
    if (prefix.size() == proto::kDataChunkPrefixBytes) break;
  }
  FEDCL_ASSIGN_OR_RETURN(const size_t at, proto::DataChunkOffset(prefix, chunk_.Length()));
  const uint64_t length = chunk_.Length() - at;
  if (length > static_cast<uint64_t>(service_.options().chunk_bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a chunk of ", length, " bytes exceeds the limit of ", service_.options().chunk_bytes));
  }
  if (static_cast<int64_t>(length) > expected_bytes_ - received_bytes_) {
    return absl::InvalidArgumentError("more data than the header declared");
  }
  // Each byte is read once: copied into the staging buffer and checksummed in the same pass.
  char* out = StagedBytes() + received_bytes_;
  size_t skip = at;  // the prefix bytes, possibly spread over the first slices
  for (const grpc::Slice& s : slices) {
    absl::string_view bytes(reinterpret_cast<const char*>(s.begin()), s.size());
    const size_t dropped = std::min(skip, bytes.size());
    bytes.remove_prefix(dropped);
    skip -= dropped;
    crc_ = base::Crc32Copy(bytes, out, crc_);
    out += bytes.size();
  }
  received_bytes_ += static_cast<int64_t>(length);
  return absl::OkStatus();
}

void SubmitReactor::OnData() {
  StagingBuffers::Buffer buffer;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ != Phase::kReceiving) return;  // expired while this chunk was in flight
    status = AcceptData();
    if (status.ok()) {
      StartRead(&chunk_);
    } else {
      phase_ = Phase::kFinished;
      buffer = std::move(buffer_);
    }
  }
  if (!status.ok()) return End(status, std::move(buffer));
  service_.upload_slots().Touch(this);
}

void SubmitReactor::OnHalfClose() {
  StagingBuffers::Buffer buffer;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ != Phase::kReceiving) return;
    if (cancelled_) {
      status = absl::CancelledError("update cancelled; nothing was folded");
    } else if (received_bytes_ != expected_bytes_) {
      status = absl::InvalidArgumentError(absl::StrCat("the update stream ended after ",
                                                       received_bytes_, " of ", expected_bytes_,
                                                       " bytes; nothing was folded"));
    } else if (crc_ != header_.crc32()) {
      status = absl::DataLossError("the update's data does not match its CRC-32");
    }
    if (status.ok()) {
      phase_ = Phase::kSubmitting;
    } else {
      phase_ = Phase::kFinished;
      buffer = std::move(buffer_);
    }
  }
  if (!status.ok()) return End(status, std::move(buffer));
  service_.upload_slots().Disarm(this);  // what remains is the server's work
  if (service_.options().inline_submits) return Submit();
  service_.workers().Post([self = shared_from_this()] { self->Submit(); });
}

void SubmitReactor::Submit() {
  StagingBuffers::Buffer buffer;
  {
    absl::MutexLock lock(&mu_);
    buffer = std::move(buffer_);
  }
  const absl::Span<float> values =
      absl::MakeSpan(buffer.data.get(), static_cast<size_t>(layout_.total_values));
  absl::Status decoded;
  if (layout_.compressed) {
    // Decoded into the head of the buffer, from the bytes staged behind it; the fold then reads
    // the floats as it reads any float32 update (the rules clip and weight decoded deltas).
    decoded = proto::DecodeUpdatePayload(
        layout_,
        absl::string_view(reinterpret_cast<const char*>(buffer.data.get()) + DataOffset(),
                          static_cast<size_t>(expected_bytes_)),
        values);
  }
  absl::StatusOr<fl::SubmitResult> result =
      decoded.ok()
          ? service_.coordinator().Submit(proto::SubmissionFromHeader(header_, layout_, values))
          : absl::StatusOr<fl::SubmitResult>(decoded);
  if (result.ok()) {
    v1::SubmitUpdateResponse response;
    response.set_round(result->round);
    response.set_duplicate(result->duplicate);
    response.set_weight(result->weight);
    response.set_clipped(result->clipped);
    bool own_buffer = false;
    grpc::SerializationTraits<v1::SubmitUpdateResponse>::Serialize(response, response_,
                                                                   &own_buffer);
  }
  {
    absl::MutexLock lock(&mu_);
    phase_ = Phase::kFinished;
  }
  End(result.status(), std::move(buffer));  // OK finishes the call successfully
}

bool SubmitReactor::OnExpired(const absl::Status& why) {
  StagingBuffers::Buffer buffer;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ != Phase::kReceiving) return false;
    phase_ = Phase::kFinished;
    buffer = std::move(buffer_);
  }
  service_.staging().Return(std::move(buffer));
  service_.log().Write(base::LogLevel::kWarning, why.message());
  Finish(ToGrpcStatus(why));  // the pending read then completes, and finds the call finished
  return true;
}

void SubmitReactor::OnReadDone(bool ok) {
  Phase phase;
  {
    absl::MutexLock lock(&mu_);
    if (!ok) cancelled_ = cancelled_ || context_->IsCancelled();
    phase = phase_;
  }
  if (phase == Phase::kHeader) {
    if (ok) return OnHeader();
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      if (phase_ != Phase::kHeader) return;
      phase_ = Phase::kFinished;
      cancelled = cancelled_;
    }
    return End(cancelled ? absl::CancelledError("update cancelled; nothing was folded")
                         : absl::InvalidArgumentError("empty update stream"),
               {});
  }
  if (phase != Phase::kReceiving) return;  // finished (expired) while the read was pending
  if (ok) return OnData();
  OnHalfClose();  // the client half-closed, or the call was cancelled
}

void SubmitReactor::OnCancel() {
  bool finish = false;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    // While waiting for a slot no operation is pending, so nothing else would finish the call.
    if (phase_ == Phase::kWaiting) {
      phase_ = Phase::kFinished;
      finish = true;
    }
  }
  if (finish) End(absl::CancelledError("update cancelled while waiting for an upload slot"), {});
}

void SubmitReactor::OnDone() {
  StagingBuffers::Buffer buffer;
  {
    absl::MutexLock lock(&mu_);
    phase_ = Phase::kFinished;
    buffer = std::move(buffer_);  // normally returned already
  }
  service_.staging().Return(std::move(buffer));
  service_.upload_slots().Leave(this);                     // normally left already
  std::shared_ptr<SubmitReactor> last = std::move(self_);  // may be the last reference
}

}  // namespace fedcl::server
