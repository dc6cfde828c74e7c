// One simulated device for load tests of the fedcl.v1.Federation service, and the update it
// sends. tests/bench/submit_load_benchmark.cc runs K of them at once.
//
//   LoadClientOptions options{.target = "127.0.0.1:50051", .token = "..."};
//   CallStats stats;
//   LoadClient client(options, /*id=*/1, stats);
//   FEDCL_ASSIGN_OR_RETURN(v1::JoinResponse joined, client.Join());
//   FEDCL_ASSIGN_OR_RETURN(v1::GetWorkResponse work, client.AwaitWork(-1, deadline, abort));
//   FEDCL_ASSIGN_OR_RETURN(Workload workload,
//                          LearnWorkload(options, client, work, /*module=*/"", chunk_bytes, seed));
//   FEDCL_ASSIGN_OR_RETURN(v1::SubmitUpdateResponse ack, client.Submit(workload, work.round()));
//
// By default every client has its own channel, hence its own TCP connection, as separate devices
// would; clients may also share channels, as a simulator worker acting for many clients does.
// Every RPC carries the deadline and the bearer token; calls failing with UNAVAILABLE,
// RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED are retried (a submission is idempotent on (client,
// round)) up to `max_retries` times with exponential backoff. Errors are returned as
// absl::Status with the gRPC code (the two share the canonical numbering) and counted, retried
// or not, in CallStats.
#ifndef FEDCL_TESTS_BENCH_LOAD_CLIENT_H_
#define FEDCL_TESTS_BENCH_LOAD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "proto/fedcl/v1/federation.pb.h"

namespace fedcl::bench {

struct LoadClientOptions {
  // Server address, e.g. "127.0.0.1:50051".
  std::string target;
  // Bearer token of every client (e.g. a worker token covering all ids); empty = none.
  std::string token;
  // Per-client tokens, taking precedence over `token`.
  absl::flat_hash_map<uint64_t, std::string> tokens;
  // PEM root certificates: connect with TLS; empty = plaintext.
  std::string tls_ca_pem;
  // With TLS: the name the server certificate must carry, if not the target's host.
  std::string tls_server_name;
  // Largest message sent or received.
  int64_t max_message_bytes = 64 << 20;
  // Deadline of every RPC.
  absl::Duration rpc_timeout = absl::Seconds(60);
  // Retries of a call failing with a retriable code.
  int max_retries = 5;
  // Cap on the delay an ACTION_WAIT suggests.
  absl::Duration max_retry_after = absl::Seconds(1);
  // Learn each module's tensors with DownloadModule (false) or assume one tensor "w" (true).
  bool flat_layout = false;
};

// Counts of what went wrong, by status code name ("UNAVAILABLE"), plus retries and waits.
// Thread-safe.
class CallStats {
 public:
  void AddError(grpc::StatusCode code);
  void AddRetry() { retries_.fetch_add(1); }
  void AddWaits(int64_t n) { waits_.fetch_add(n); }
  std::map<std::string, int64_t> errors() const;
  int64_t retries() const { return retries_.load(); }
  int64_t waits() const { return waits_.load(); }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> retries_{0};
  std::atomic<int64_t> waits_{0};
};

// One module's part of an update: its name, size, and the layout sent in the header.
struct ModuleLayout {
  std::string name;
  int64_t num_values = 0;
  v1::ParameterSet layout;  // tensor names, shapes and dtype; no data
};

// What every client submits: the same values, built once and shared read-only.
struct Workload {
  std::vector<ModuleLayout> modules;  // in GetWork's pool order
  int64_t values = 0;                 // sum of num_values
  int64_t chunk_bytes = 0;
  uint32_t crc32 = 0;                        // of all the delta bytes
  std::vector<v1::UpdateChunk> data_chunks;  // the delta bytes, at most chunk_bytes each
};

class LoadClient;

// The workload for `work`'s modules (only `module` if not empty): layouts learnt through
// `client` (one DownloadModule per module unless flat_layout), then `values` small finite float32
// values from `seed`, cut into chunks of `chunk_bytes`. NotFound if no module matches;
// DataLoss for a corrupt download; FailedPrecondition if a layout disagrees with num_values.
absl::StatusOr<Workload> LearnWorkload(const LoadClientOptions& options, LoadClient& client,
                                       const v1::GetWorkResponse& work, absl::string_view module,
                                       int64_t chunk_bytes, uint64_t seed);

// A channel to options.target with its own TCP connection (channels with equal arguments
// otherwise share one), TLS if options.tls_ca_pem is set.
std::shared_ptr<grpc::Channel> MakeChannel(const LoadClientOptions& options);

// Not thread-safe: one thread drives one client. `options` and `stats` must outlive it.
class LoadClient {
 public:
  // Talks over `channel`, or over a channel of its own if null.
  LoadClient(const LoadClientOptions& options, uint64_t id, CallStats& stats,
             std::shared_ptr<grpc::Channel> channel = nullptr);

  uint64_t id() const { return id_; }
  v1::Federation::Stub& stub() { return *stub_; }

  // Enrols the client; waits for the channel to connect (within the RPC deadline).
  absl::StatusOr<v1::JoinResponse> Join();

  // Polls GetWork, sleeping the suggested delay on ACTION_WAIT, until it says ACTION_TRAIN for a
  // round after `after_round`. DeadlineExceeded past `deadline`; Cancelled once `abort` is set.
  absl::StatusOr<v1::GetWorkResponse> AwaitWork(int64_t after_round, absl::Time deadline,
                                                const std::atomic<bool>& abort);

  // Streams one update for `round`, each delta based on the version the last AwaitWork gave.
  absl::StatusOr<v1::SubmitUpdateResponse> Submit(const Workload& workload, int64_t round);

  // An update stream left open after its header and the first `chunks` data chunks: a slow
  // client (or, with chunks = 0, one that abandoned its upload). No retries; the RPC deadline
  // applies. Finish() waits for the server to end it and returns the status.
  class OpenUpload {
   public:
    grpc::Status Finish() { return writer_->Finish(); }
    void Cancel() { context_.TryCancel(); }

   private:
    friend class LoadClient;
    grpc::ClientContext context_;
    v1::SubmitUpdateResponse response_;
    std::unique_ptr<grpc::ClientWriter<v1::UpdateChunk>> writer_;
  };
  std::unique_ptr<OpenUpload> StartStalledSubmit(const Workload& workload, int64_t round,
                                                 size_t chunks);

 private:
  // Runs `call` on fresh contexts until it succeeds, fails for good, or retries run out.
  template <typename Call>
  grpc::Status WithRetries(Call call);
  // The first message of this client's stream for `workload` in `round`.
  v1::UpdateChunk Header(const Workload& workload, int64_t round);

  const LoadClientOptions& options_;
  const uint64_t id_;
  CallStats& stats_;
  std::unique_ptr<v1::Federation::Stub> stub_;
  std::map<std::string, int64_t> held_;  // module versions from the last GetWork
};

}  // namespace fedcl::bench

#endif  // FEDCL_TESTS_BENCH_LOAD_CLIENT_H_
