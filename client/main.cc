// fedcl-client: one federated device. It joins a fedcl-server, then asks for work, trains the
// round's modules on its local data and submits them, until it has taken part in --rounds rounds
// or --duration has passed.
//
//   fedcl-client --server=localhost:50051 --client_id=3 --token_file=client3.token
//                --state_dir=/var/lib/fedcl-client/3 --num_partitions=10 --partition=dirichlet
//                --dirichlet_alpha=0.5 --partition_seed=1 --rounds=20
//
// With --method (a continual learner: sequential_adapter, linear_head, simple_cil,
// fed_simple_cil, lae, fedins, sema, sema_replay) the device instead learns its partition as a
// stream, --batches_per_sync minibatches between syncs, and may grow and share modules. Both are
// one loop over the same device session the edge SDK and the simulators run (client/device.h):
//
//   fedcl-client --server=localhost:50051 --client_id=3 --token_file=client3.token
//                --state_dir=/var/lib/fedcl-client/3 --method=sema --shift_after=300 --rounds=40
//
// Its state (enrolment, modules, an unacknowledged update) lives in --state_dir, so a restarted
// client continues where it stopped. Progress goes to stderr, one line per round; a final summary
// line goes to stdout. Exit status: 0 after --rounds participations, --duration, or SIGINT /
// SIGTERM; 1 on a fatal error (bad token, refused update, unreadable data, ...); 2 for invalid
// flag values (flags Abseil cannot parse at all exit with Abseil's status 1).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/device.h"
#include "core/base/clock.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/log.h"
#include "core/base/status_macros.h"

ABSL_FLAG(std::string, server, "localhost:50051", "Server address (gRPC target), host:port.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file with the CA certificate(s) to check the server against; empty = plaintext "
          "(loopback only).");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name to check in the server's certificate when it differs from the --server host.");
ABSL_FLAG(std::string, token, "", "Bearer token of this client (prefer --token_file).");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token (surrounding whitespace is "
          "ignored).");
ABSL_FLAG(uint64_t, client_id, 0, "This device's client id.");
ABSL_FLAG(std::string, state_dir, "",
          "Directory for the client's state and backbone cache "
          "(one per client id). Required.");
ABSL_FLAG(std::string, backbone, "",
          "Local copy of the server's backbone checkpoint; empty downloads it (and caches it in "
          "--state_dir). It must be the server's backbone (checked by SHA-256).");
ABSL_FLAG(std::string, data_dir, "/usr/share/datasets/fashion-mnist",
          "Fashion-MNIST directory (its training split is the local data).");
ABSL_FLAG(std::string, images, "",
          "Images to use instead of Fashion-MNIST: an IDX file, or a NumPy .npy (.npy.gz) array "
          "of uint8 or float32, [N, H, W] or 4-D (see --npy_channels_last).");
ABSL_FLAG(std::string, labels, "", "Labels to go with --images (IDX, or .npy of integers).");
ABSL_FLAG(bool, npy_channels_last, true,
          "A 4-D .npy image array is [N, H, W, C] (NumPy, PIL); false: [N, C, H, W] (PyTorch).");
ABSL_FLAG(int, num_classes, 10, "Classes of the --images/--labels data.");
ABSL_FLAG(int, max_samples, 0, "Use only the first N samples of the dataset (0 = all).");
ABSL_FLAG(std::string, partition, "iid", "How the dataset is split: iid, dirichlet or shards.");
ABSL_FLAG(int, num_partitions, 1, "Number of partitions (devices) the dataset is split into.");
ABSL_FLAG(int, partition_index, -1,
          "The partition this device trains on; -1 = client id mod --num_partitions.");
ABSL_FLAG(uint64_t, partition_seed, 0, "Seeds the split; the same for every device.");
ABSL_FLAG(double, dirichlet_alpha, 0.5, "Dirichlet concentration for --partition=dirichlet.");
ABSL_FLAG(int, shards_per_client, 2, "Shards per device for --partition=shards.");
ABSL_FLAG(double, participation, 1.0,
          "Probability of taking part in each round offered, in (0, 1].");
ABSL_FLAG(uint64_t, participation_seed, 2, "Seeds the participation draws.");
ABSL_FLAG(double, throttle_ms_per_sample, 0.0,
          "Recipe mode: after training, wait this many milliseconds per trained sample, to stand "
          "in for a slower device (asynchronous rounds: its updates arrive late).");
ABSL_FLAG(int, rounds, 0,
          "Exit after this many acknowledged updates (continual mode: open rounds synced in; "
          "0 = no limit).");
ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "Exit after this long, e.g. 10m (0 = no limit).");
ABSL_FLAG(uint64_t, seed, 1, "Seeds local training (minibatch order).");
ABSL_FLAG(absl::Duration, backoff_initial, absl::Milliseconds(200), "First retry delay.");
ABSL_FLAG(absl::Duration, backoff_max, absl::Seconds(30), "Longest retry delay.");
ABSL_FLAG(double, backoff_multiplier, 2.0, "Retry delay growth per failure.");
ABSL_FLAG(double, backoff_jitter, 0.2, "Relative jitter of retry delays, in [0, 1).");
ABSL_FLAG(int, max_failures, 0,
          "Give up after this many consecutive failures of one call (0 = keep trying).");
ABSL_FLAG(absl::Duration, call_timeout, absl::Seconds(60), "Deadline of each call.");
ABSL_FLAG(int64_t, max_message_bytes, int64_t{4} << 20, "Largest gRPC message, in bytes.");
ABSL_FLAG(absl::Duration, max_poll, absl::Seconds(10), "Longest wait between asks for work.");
ABSL_FLAG(std::string, method, "",
          "Continual mode: the learner (sequential_adapter, linear_head, simple_cil, "
          "fed_simple_cil, lae, fedins, sema, sema_replay) learns the partition as a stream; empty "
          "= run the server's recipe "
          "(method recipe).");
ABSL_FLAG(std::string, method_options, "",
          "The method's knobs as `key: value` pairs, e.g. \"expansion_tau: 1.5\" for sema.");
ABSL_FLAG(int, batch_size, 32, "Continual mode: images per Learn batch.");
ABSL_FLAG(int, batches_per_sync, 10, "Continual mode: Learn batches between syncs.");
ABSL_FLAG(int64_t, shift_after, -1,
          "Continual mode: contrast-invert the stream from this batch on (-1 = never).");
ABSL_FLAG(double, learning_rate, 0.05, "Continual mode: the learner's SGD learning rate.");
ABSL_FLAG(int64_t, memory_budget_mib, 48,
          "Continual mode: the bytes a growing method's modules may take, in MiB (0 = no bound).");

namespace fedcl::client {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadFlags = 2;

// Set by the signal handler (only async-signal-safe work there); a watcher thread stops the loop.
std::atomic<bool> g_signalled{false};

void OnSignal(int) { g_signalled.store(true); }

// Runs `run` with SIGINT and SIGTERM calling `stop` (from a watcher thread: a handler may only
// set a flag).
absl::Status RunUntilSignalled(const std::function<absl::Status()>& run,
                               const std::function<void()>& stop) {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    while (!finished.load()) {
      if (g_signalled.load()) {
        stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  const absl::Status status = run();
  finished.store(true);
  watcher.join();
  return status;
}

absl::StatusOr<DeviceOptions> OptionsFromFlags(const base::FileSystem& fs) {
  DeviceOptions options;
  options.server.target = absl::GetFlag(FLAGS_server);
  options.server.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.server.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.server.token = absl::GetFlag(FLAGS_token);
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    if (!options.server.token.empty()) {
      return absl::InvalidArgumentError("give --token or --token_file, not both");
    }
    FEDCL_ASSIGN_OR_RETURN(std::string token, fs.ReadFile(absl::GetFlag(FLAGS_token_file), 4096));
    options.server.token = std::string(absl::StripAsciiWhitespace(token));
  }
  options.server.call_timeout = absl::GetFlag(FLAGS_call_timeout);
  options.server.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.server.reconnect_backoff_initial = absl::GetFlag(FLAGS_backoff_initial);
  options.server.reconnect_backoff_max = absl::GetFlag(FLAGS_backoff_max);
  FEDCL_RETURN_IF_ERROR(options.server.Validate());
  options.client_id = absl::GetFlag(FLAGS_client_id);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  options.backbone_checkpoint = absl::GetFlag(FLAGS_backbone);
  LocalDataOptions& data = options.data;
  data.fashion_mnist_dir = absl::GetFlag(FLAGS_data_dir);
  data.images_path = absl::GetFlag(FLAGS_images);
  data.labels_path = absl::GetFlag(FLAGS_labels);
  data.npy_channels_last = absl::GetFlag(FLAGS_npy_channels_last);
  data.num_classes = absl::GetFlag(FLAGS_num_classes);
  data.max_samples = absl::GetFlag(FLAGS_max_samples);
  FEDCL_ASSIGN_OR_RETURN(data.partition, ParsePartitionKind(absl::GetFlag(FLAGS_partition)));
  data.num_partitions = absl::GetFlag(FLAGS_num_partitions);
  data.partition_index = absl::GetFlag(FLAGS_partition_index);
  data.partition_seed = absl::GetFlag(FLAGS_partition_seed);
  data.dirichlet_alpha = absl::GetFlag(FLAGS_dirichlet_alpha);
  data.shards_per_client = absl::GetFlag(FLAGS_shards_per_client);
  options.participation_probability = absl::GetFlag(FLAGS_participation);
  options.throttle_per_sample = absl::Milliseconds(absl::GetFlag(FLAGS_throttle_ms_per_sample));
  options.participation_seed = absl::GetFlag(FLAGS_participation_seed);
  options.max_rounds = absl::GetFlag(FLAGS_rounds);
  options.max_duration = absl::GetFlag(FLAGS_duration);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.backoff.initial = absl::GetFlag(FLAGS_backoff_initial);
  options.backoff.max = absl::GetFlag(FLAGS_backoff_max);
  options.backoff.multiplier = absl::GetFlag(FLAGS_backoff_multiplier);
  options.backoff.jitter = absl::GetFlag(FLAGS_backoff_jitter);
  options.backoff.max_consecutive_failures = absl::GetFlag(FLAGS_max_failures);
  options.max_poll = absl::GetFlag(FLAGS_max_poll);
  options.min_poll = std::min(options.min_poll, options.max_poll);
  options.software = absl::StrCat("fedcl-client ", FEDCL_VERSION);
  if (!absl::GetFlag(FLAGS_method).empty()) options.method = absl::GetFlag(FLAGS_method);
  options.method_options = absl::GetFlag(FLAGS_method_options);
  options.learning_rate = static_cast<float>(absl::GetFlag(FLAGS_learning_rate));
  options.module_memory_budget_bytes = absl::GetFlag(FLAGS_memory_budget_mib) << 20;
  options.batch_size = absl::GetFlag(FLAGS_batch_size);
  options.batches_per_sync = absl::GetFlag(FLAGS_batches_per_sync);
  options.shift_after = absl::GetFlag(FLAGS_shift_after);
  FEDCL_RETURN_IF_ERROR(options.Validate());
  return options;
}

// One line on stdout; the recipe and continual forms are what scripts read.
void PrintSummary(const DeviceOptions& options, const DeviceStats& s, absl::Duration elapsed,
                  absl::string_view outcome) {
  const unsigned long long id = options.client_id;
  if (options.recipe()) {
    std::printf(
        "client %llu %s: %lld updates acknowledged (%lld duplicates), %lld rounds skipped, %lld "
        "dropped, %lld retries; last round %lld, loss %.4f; %lld acknowledged in all; %.1f s\n",
        id, std::string(outcome).c_str(), static_cast<long long>(s.participations),
        static_cast<long long>(s.duplicates), static_cast<long long>(s.rounds_skipped),
        static_cast<long long>(s.updates_dropped), static_cast<long long>(s.retries),
        static_cast<long long>(s.last_round), s.last_loss,
        static_cast<long long>(s.total_participations), absl::ToDoubleSeconds(elapsed));
  } else {
    std::printf(
        "client %llu %s (%s): %lld batches, prequential accuracy %.4f, %lld rounds, %lld updates "
        "acknowledged (%lld in all), %lld retries; %lld adapters, %lld growths refused, %lld "
        "proposals pending; %.1f s\n",
        id, std::string(outcome).c_str(), options.method.c_str(), static_cast<long long>(s.batches),
        s.prequential_accuracy(), static_cast<long long>(s.rounds),
        static_cast<long long>(s.participations), static_cast<long long>(s.total_participations),
        static_cast<long long>(s.retries), static_cast<long long>(s.adapters),
        static_cast<long long>(s.growth_refusals), static_cast<long long>(s.proposals_pending),
        absl::ToDoubleSeconds(elapsed));
  }
  std::fflush(stdout);
}

int Run(int argc, char** argv) {
  if (!base::ParseCommandLine(
          argc, argv, "fedcl-client",
          "A federated device: joins a fedcl-server and trains its modules on local data.\n"
          "  fedcl-client --server=HOST:PORT --client_id=N --token_file=FILE --state_dir=DIR",
          "client/")) {
    return kExitBadFlags;
  }
  base::FileSystem& fs = base::FileSystem::Default();
  absl::StatusOr<DeviceOptions> options = OptionsFromFlags(fs);
  if (!options.ok()) {
    std::fprintf(stderr, "fedcl-client: %s\n", std::string(options.status().message()).c_str());
    return kExitBadFlags;
  }
  base::Clock& clock = base::Clock::Real();
  const absl::Time start = clock.Now();
  absl::StatusOr<std::unique_ptr<Device>> device = Device::Create(*options, {});
  if (!device.ok()) {
    std::fprintf(stderr, "fedcl-client: %s\n", device.status().ToString().c_str());
    return kExitFailure;
  }
  const absl::Status status =
      RunUntilSignalled([&] { return (*device)->Run(); }, [&] { (*device)->Stop(); });
  PrintSummary(*options, (*device)->stats(), clock.Now() - start, status.ok() ? "done" : "failed");
  if (!status.ok()) {
    std::fprintf(stderr, "fedcl-client: %s\n", status.ToString().c_str());
    return kExitFailure;
  }
  return 0;
}

}  // namespace
}  // namespace fedcl::client

int main(int argc, char** argv) { return fedcl::client::Run(argc, argv); }
