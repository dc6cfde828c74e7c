// Multi-process simulation: a worker process hosts shard `shard` of `shards` of the virtual
// clients and talks to a real fedcl-server over gRPC exactly as devices do (Join, GetWork,
// DownloadModule, SubmitUpdate), with a worker token covering its clients.
//
//   fedcl-sim --emit_server_config=DIR ...        # server.textproto + the run's initial model
//                                                 # (sim/modes/emit_server_config.cc)
//   fedcl-server --config=DIR/server.textproto    # round.shards = K: rounds close on reports
//   fedcl-sim --worker --shard=0 --shards=K --server=127.0.0.1:50051 --token_file=... (× K)
//
// Each round, a worker draws its clients' participation from the streams keyed by (seed, client,
// round), trains its participants with the same RoundRunner as the in-process engine, submits,
// then reports the shard done (ReportShard) and waits until the server has closed the round,
// i.e. until every shard has reported. The draws, minibatches and fold do not depend on the
// sharding, so K workers reproduce the in-process run of the same scenario, method, pattern and
// seed (tests/integration/sim_multiprocess_test.cc checks the final accuracy).
//
// Not supported across processes: traces in seconds (they need one global virtual clock); the
// worker refuses them.
#ifndef FEDCL_SIM_RUN_WORKER_H_
#define FEDCL_SIM_RUN_WORKER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/base/filesystem.h"
#include "sim/run/results.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

struct WorkerOptions {
  std::string server;           // gRPC target, e.g. "127.0.0.1:50051"
  std::string tls_ca_file;      // empty = plaintext (loopback only)
  std::string tls_server_name;  // certificate name when it differs from the target's host
  std::string token;            // a worker token covering the shard's client ids
  int shard = 0;                // in [0, shards)
  int shards = 1;
  std::string pattern;  // one of the scenario's patterns
  uint64_t seed = 1;
  absl::Duration poll_interval = absl::Milliseconds(2);
};

// The clients of shard `shard` of `shards` over `num_clients`: [first, last).
std::pair<uint32_t, uint32_t> ShardRange(int num_clients, int shard, int shards);

// Runs the scenario's rounds for one shard; returns when the server has closed the last round.
absl::Status RunWorker(const Scenario& scenario, const SimulationInputs& inputs,
                       const WorkerOptions& options, const base::FileSystem& fs,
                       RunObserver* observer);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_WORKER_H_
