#include "client/continual_device.h"

#include <algorithm>
#include <numeric>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"

namespace fedcl::client {
namespace {

// A sync that may succeed later: the device keeps learning offline meanwhile.
bool ServerUnreachable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsCancelled(s) ||
         absl::IsAborted(s) || absl::IsResourceExhausted(s);
}

}  // namespace

absl::Status ContinualDeviceOptions::Validate() const {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("continual device: ", what));
  };
  if (batch_size < 1) return bad("batch_size must be >= 1");
  if (batches_per_sync < 1) return bad("batches_per_sync must be >= 1");
  if (shift_after < -1) return bad("shift_after must be >= 0, or -1 for no shift");
  if (max_rounds < 0) return bad("max_rounds must be >= 0");
  if (max_duration < absl::ZeroDuration()) return bad("max_duration must be >= 0");
  if (max_poll <= absl::ZeroDuration()) return bad("max_poll must be > 0");
  if (client.server_address.empty()) return bad("a server address is required");
  return data.Validate();
}

absl::StatusOr<std::unique_ptr<ContinualDevice>> ContinualDevice::Create(
    const ContinualDeviceOptions& options, const base::FileSystem& fs) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  LocalDataOptions data_options = options.data;
  data_options.normalize = false;  // [0, 1]: the SDK standardises as the backbone was trained
  FEDCL_ASSIGN_OR_RETURN(data::Dataset data,
                         LoadLocalData(fs, data_options, options.client.client_id));
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(options.client));
  return std::unique_ptr<ContinualDevice>(
      new ContinualDevice(options, std::move(client), std::move(data)));
}

ContinualDevice::ContinualDevice(const ContinualDeviceOptions& options,
                                 std::unique_ptr<Client> client, data::Dataset data)
    : options_(options), client_(std::move(client)), data_(std::move(data)) {}

ContinualDeviceStats ContinualDevice::stats() const {
  ContinualDeviceStats s = stats_;
  s.client = client_->Stats();
  return s;
}

void ContinualDevice::Sleep(absl::Duration d) {
  const absl::Time until = absl::Now() + d;
  while (!stop_.load() && absl::Now() < until) {
    std::this_thread::sleep_for(
        absl::ToChronoMilliseconds(std::min(until - absl::Now(), absl::Milliseconds(50))));
  }
}

absl::Status ContinualDevice::EnsureBackbone() {
  if (!options_.backbone.empty()) return client_->LoadBackbone(options_.backbone);
  absl::Duration delay = absl::Milliseconds(200);
  while (!stop_.load() && !client_->Stats().backbone_loaded) {
    absl::StatusOr<SyncResult> synced = client_->Sync();  // the first sync downloads it
    if (synced.ok()) {
      if (!client_->Stats().backbone_loaded)
        Sleep(std::min(synced->retry_after, options_.max_poll));
      continue;
    }
    if (!ServerUnreachable(synced.status())) return synced.status();
    ++stats_.sync_failures;
    Sleep(delay);
    delay = std::min(delay * 2, options_.max_poll);
  }
  return absl::OkStatus();
}

absl::Status ContinualDevice::LearnBatch() {
  const int n = std::min(options_.batch_size, data_.size());
  const int64_t per_image = data_.sample_dim();
  pixels_.resize(static_cast<size_t>(n * per_image));
  labels_.resize(n);
  const bool shifted = options_.shift_after >= 0 && stats_.batches >= options_.shift_after;
  for (int i = 0; i < n; ++i) {
    if (next_ == order_.size()) {  // a new pass over the partition, in a new order
      order_.resize(data_.size());
      std::iota(order_.begin(), order_.end(), 0);
      base::Rng rng =
          base::Rng::ForStream(options_.client.seed, {options_.client.client_id, pass_++});
      for (size_t j = order_.size() - 1; j > 0; --j)
        std::swap(order_[j], order_[rng.UniformInt(j + 1)]);
      next_ = 0;
    }
    const int sample = order_[next_++];
    for (int64_t k = 0; k < per_image; ++k) {
      const float v = data_.images(sample, k);
      pixels_[i * per_image + k] = shifted ? 1.0f - v : v;
    }
    labels_[i] = data_.labels[sample];
  }
  predictions_.resize(n);
  FEDCL_RETURN_IF_ERROR(client_->Predict(pixels_, absl::MakeSpan(predictions_)));
  for (int i = 0; i < n; ++i) stats_.correct += predictions_[i].label == labels_[i] ? 1 : 0;
  stats_.scored += n;
  FEDCL_RETURN_IF_ERROR(client_->Learn(pixels_, labels_).status());
  ++stats_.batches;
  return absl::OkStatus();
}

absl::Status ContinualDevice::Run() {
  const absl::Time start = absl::Now();
  auto out_of_time = [&] {
    return options_.max_duration > absl::ZeroDuration() &&
           absl::Now() - start >= options_.max_duration;
  };
  absl::Status status = EnsureBackbone();
  absl::Duration delay = absl::Milliseconds(200);
  while (status.ok() && !stop_.load() && !out_of_time() &&
         (options_.max_rounds == 0 || stats_.rounds < options_.max_rounds)) {
    for (int b = 0; b < options_.batches_per_sync && status.ok() && !stop_.load(); ++b)
      status = LearnBatch();
    if (!status.ok() || stop_.load()) break;
    absl::StatusOr<SyncResult> synced = client_->Sync();
    if (!synced.ok()) {
      if (!ServerUnreachable(synced.status())) {
        status = synced.status();
        break;
      }
      ++stats_.sync_failures;  // learn on offline; sync again after a growing delay
      Sleep(delay);
      delay = std::min(delay * 2, options_.max_poll);
      continue;
    }
    delay = absl::Milliseconds(200);
    // A round counts once the device synced in it while it was open, whether it had learning to
    // send or not (SimpleCIL never has).
    if (synced->round >= 0 && !synced->round_closed && synced->round != last_round_) {
      last_round_ = synced->round;
      ++stats_.rounds;
    }
    if (synced->submitted) {
      ++stats_.submissions;
    } else {
      // Waiting for the next round: as long as the server says, or max_poll.
      Sleep(synced->retry_after > absl::ZeroDuration()
                ? std::min(synced->retry_after, options_.max_poll)
                : options_.max_poll);
    }
  }
  const absl::Status saved = client_->Save();
  return status.ok() ? saved : status;
}

}  // namespace fedcl::client
