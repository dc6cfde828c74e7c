// fedcl-client's continual mode (--method): the device learns its local data as a stream through
// the edge SDK (fedcl::Client), with the same learner, offline queue, durable state and sync as
// an app on a phone, instead of running the server's fixed local recipe (DeviceLoop).
//
//   client::ContinualDeviceOptions options;
//   options.client.server_address = "localhost:50051";  // + token, client id, storage_dir, method
//   FEDCL_ASSIGN_OR_RETURN(auto device, client::ContinualDevice::Create(options, fs));
//   FEDCL_RETURN_IF_ERROR(device->Run());
//
// Each cycle learns `batches_per_sync` minibatches of the local partition (reshuffled every
// pass), scoring each before it is learned (prequential accuracy), then syncs. A sync in an open
// round counts that round (`max_rounds`), whether it submitted or had nothing to send (SimpleCIL
// never has); after a sync that did not submit, the device sleeps until the server's suggested
// time, or `max_poll`, so a device learns about `batches_per_sync` batches per round. A server that
// cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED, ...) does not stop the device: it keeps
// learning offline and syncs again after a growing delay. Any other sync error ends Run with that
// error.
//
// `shift_after` makes the stream shift (contrast inversion, 1 − x) from that batch on, the
// domain shift SEMA devices expand for; `BeginTask` is never called (growth starts a task).
#ifndef FEDCL_CLIENT_CONTINUAL_DEVICE_H_
#define FEDCL_CLIENT_CONTINUAL_DEVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/local_data.h"
#include "core/base/filesystem.h"
#include "core/data/dataset.h"
#include "fedcl/client.h"

namespace fedcl::client {

struct ContinualDeviceOptions {
  ClientOptions client;  // server, TLS, token, client id, storage dir, method, seed, ...
  // The device's partition; pixels are read as v / 255 (the SDK standardises them itself).
  LocalDataOptions data;
  std::string backbone;  // a local copy of the server's backbone; empty: the first sync gets it
  int batch_size = 32;   // >= 1
  int batches_per_sync = 10;  // >= 1
  int64_t shift_after = -1;   // the batch from which the stream is inverted; -1: never
  int max_rounds = 0;         // stop after syncing in this many open rounds (0: no limit)
  absl::Duration max_duration = absl::ZeroDuration();  // 0: no limit
  absl::Duration max_poll = absl::Seconds(10);         // longest wait between syncs (> 0)
  absl::Status Validate() const;
};

struct ContinualDeviceStats {
  int64_t batches = 0;        // learned in this run
  int64_t scored = 0;         // images scored before they were learned
  int64_t correct = 0;        // ... and predicted right
  int64_t rounds = 0;         // open rounds the device synced in, in this run
  int64_t submissions = 0;    // in this run
  int64_t sync_failures = 0;  // syncs that could not reach the server
  ClientStats client;         // the SDK's
  double prequential_accuracy() const {
    return scored > 0 ? static_cast<double>(correct) / static_cast<double>(scored) : 0.0;
  }
};

class ContinualDevice {
 public:
  // InvalidArgument for bad options; the SDK's and the data's errors pass through.
  static absl::StatusOr<std::unique_ptr<ContinualDevice>> Create(
      const ContinualDeviceOptions& options, const base::FileSystem& fs);
  // Runs until max_rounds submissions, max_duration, or Stop. OK then; the error that stopped it
  // otherwise. The device state is saved either way.
  absl::Status Run();
  // Makes Run return soon (from any thread): a sync in progress is cancelled.
  void Stop() {
    stop_.store(true);
    client_->CancelSync();
  }
  ContinualDeviceStats stats() const;

 private:
  ContinualDevice(const ContinualDeviceOptions& options, std::unique_ptr<Client> client,
                  data::Dataset data);
  absl::Status EnsureBackbone();
  absl::Status LearnBatch();
  // Sleeps up to `d`, waking early on Stop.
  void Sleep(absl::Duration d);

  ContinualDeviceOptions options_;
  std::unique_ptr<Client> client_;
  data::Dataset data_;
  std::vector<int> order_;  // this pass's sample order
  size_t next_ = 0;
  uint64_t pass_ = 0;
  std::vector<float> pixels_;
  std::vector<int32_t> labels_;
  std::vector<Prediction> predictions_;
  std::atomic<bool> stop_{false};
  ContinualDeviceStats stats_;
  int64_t last_round_ = -1;
};

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_CONTINUAL_DEVICE_H_
