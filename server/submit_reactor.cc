#include "server/submit_reactor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/base/status_macros.h"
#include "proto/federation_convert.h"
#include "server/federation_service.h"
#include "server/grpc_status.h"

namespace fedcl::server {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "update bytes are little-endian float32 and are copied as is");

SubmitReactor::SubmitReactor(FederationService& service, grpc::CallbackServerContext* context,
                             grpc::ByteBuffer* response)
    : service_(service), context_(context), response_(response) {
  StartRead(&chunk_);
}

void SubmitReactor::Fail(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
  }
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
  if (header_.modules_size() == 0) return absl::InvalidArgumentError("the update has no modules");
  // The largest update that could be valid: every pooled module once.
  int64_t largest = 0;
  for (const fl::ModuleSnapshot& m : service_.coordinator().Modules())
    largest += m.values->num_values();
  int64_t floats = 0;
  for (const v1::ModuleDelta& delta : header_.modules()) {
    FEDCL_ASSIGN_OR_RETURN(std::vector<fl::TensorSpec> layout,
                           proto::LayoutFromProto(delta.layout()));
    int64_t size = 0;
    for (const fl::TensorSpec& spec : layout) size += nn::NumElements(spec.shape);
    if (size > largest || floats + size > largest) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the update declares more values than the pool's ", largest, " in all"));
    }
    layouts_.push_back(std::move(layout));
    sizes_.push_back(size);
    floats += size;
  }
  expected_bytes_ = floats * static_cast<int64_t>(sizeof(float));
  if (header_.total_bytes() != expected_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("header says ", header_.total_bytes(),
                                                   " bytes of data; its layouts hold ",
                                                   expected_bytes_));
  }
  have_header_ = true;
  return absl::OkStatus();
}

absl::Status SubmitReactor::AcceptData() {
  std::vector<grpc::Slice> slices;
  if (!chunk_.Dump(&slices).ok()) return absl::InternalError("cannot read the chunk's bytes");
  // The wire form of UpdateChunk{data: ...}: tag 0x12 (field 2, length-delimited), the length
  // as a varint, then the bytes. The prefix is at most 11 bytes; gather it across slices.
  std::string prefix;
  for (const grpc::Slice& s : slices) {
    prefix.append(reinterpret_cast<const char*>(s.begin()),
                  std::min<size_t>(s.size(), 11 - prefix.size()));
    if (prefix.size() == 11) break;
  }
  if (prefix.empty() || static_cast<uint8_t>(prefix[0]) != 0x12) {
    return absl::InvalidArgumentError("only data may follow the header");
  }
  uint64_t length = 0;
  size_t at = 1;
  for (int shift = 0; at < prefix.size() && shift < 64; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(prefix[at++]);
    length |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) break;
  }
  if (length != chunk_.Length() - at) {
    return absl::InvalidArgumentError("a data chunk must hold exactly one data field");
  }
  if (static_cast<int64_t>(length) > service_.options().chunk_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a chunk of ", length, " bytes exceeds the limit of ", service_.options().chunk_bytes));
  }
  if (received_bytes_ + static_cast<int64_t>(length) > expected_bytes_) {
    return absl::InvalidArgumentError("more data than the header declared");
  }
  char* out = reinterpret_cast<char*>(buffer_.data.get()) + received_bytes_;
  size_t skip = at;  // the prefix bytes, possibly spread over the first slices
  for (const grpc::Slice& s : slices) {
    absl::string_view bytes(reinterpret_cast<const char*>(s.begin()), s.size());
    const size_t dropped = std::min(skip, bytes.size());
    bytes.remove_prefix(dropped);
    skip -= dropped;
    std::memcpy(out, bytes.data(), bytes.size());
    crc_ = base::Crc32(bytes, crc_);
    out += bytes.size();
  }
  received_bytes_ += static_cast<int64_t>(length);
  return absl::OkStatus();
}

void SubmitReactor::OnReadDone(bool ok) {
  if (!ok) {
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      cancelled = cancelled_ = cancelled_ || context_->IsCancelled();
    }
    // A cancelled stream still has to be finished; nothing of it is folded.
    if (cancelled) return Fail(absl::CancelledError("update cancelled; nothing was folded"));
    if (!have_header_) return Fail(absl::InvalidArgumentError("empty update stream"));
    return Complete();  // the client half-closed
  }
  if (!have_header_) {
    absl::Status status = AcceptHeader();
    if (!status.ok()) return Fail(status);
    {
      absl::MutexLock lock(&mu_);
      waiting_for_slot_ = true;
    }
    service_.upload_gate().Acquire([this] { OnSlot(); });
    return;
  }
  absl::Status status = AcceptData();
  if (!status.ok()) return Fail(status);
  StartRead(&chunk_);
}

// Runs when an upload slot is ours (possibly on the thread of the upload that released it).
void SubmitReactor::OnSlot() {
  bool release = false;
  bool destroy = false;
  {
    absl::MutexLock lock(&mu_);
    waiting_for_slot_ = false;
    holds_slot_ = true;
    if (cancelled_) {
      holds_slot_ = false;
      release = true;
      destroy = done_;  // OnDone came while we waited: we are the last one holding this
    }
  }
  if (release) {
    service_.upload_gate().Release();
    if (destroy) delete this;
    return;
  }
  buffer_ = service_.staging().Take(static_cast<size_t>(expected_bytes_ / sizeof(float)));
  StartRead(&chunk_);
}

void SubmitReactor::Complete() {
  if (received_bytes_ != expected_bytes_) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("the update stream ended after ",
                                                        received_bytes_, " of ", expected_bytes_,
                                                        " bytes; nothing was folded")));
  }
  if (crc_ != header_.crc32()) {
    return Fail(absl::DataLossError("the update's data does not match its CRC-32"));
  }
  auto submit = [this] {
    fl::UpdateSubmission update;
    update.client = header_.client_id();
    update.round = header_.round();
    update.num_samples = header_.num_samples();
    update.local_steps = header_.local_steps();
    update.loss = header_.loss();
    size_t offset = 0;
    for (int i = 0; i < header_.modules_size(); ++i) {
      const v1::ModuleDelta& delta = header_.modules(i);
      update.modules.push_back({delta.name(), delta.base_version(), layouts_[i],
                                absl::MakeSpan(buffer_.data.get() + offset, sizes_[i])});
      offset += static_cast<size_t>(sizes_[i]);
    }
    absl::StatusOr<fl::SubmitResult> result = service_.coordinator().Submit(update);
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
    service_.staging().Return(std::move(buffer_));
    Fail(result.status());  // OK finishes the call successfully
  };
  if (service_.options().inline_submits) {
    submit();
  } else {
    service_.workers().Post(std::move(submit));
  }
}

void SubmitReactor::OnCancel() {
  bool finish = false;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    // While waiting for a slot no operation is pending, so nothing else will finish the call.
    finish = waiting_for_slot_ && !finished_;
    if (finish) finished_ = true;
  }
  if (finish) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "update cancelled"));
}

void SubmitReactor::OnDone() {
  bool release = false;
  bool destroy = false;
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    release = holds_slot_;
    holds_slot_ = false;
    destroy = !waiting_for_slot_;  // else OnSlot deletes us when the gate gets round to us
  }
  if (release) {
    service_.staging().Return(std::move(buffer_));  // a failed upload's buffer is reusable too
    service_.upload_gate().Release();
  }
  if (destroy) delete this;
}

}  // namespace fedcl::server
