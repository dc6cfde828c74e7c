// fedcl's edge SDK: one federated, continually learning device inside an application.
//
//   fedcl::ClientOptions options;
//   options.server_address = "fedcl.example.org:50051";   // empty: a device that never syncs
//   options.tls_ca_file = "/etc/fedcl/ca.pem";
//   options.token = token;
//   options.client_id = 7;
//   options.storage_dir = "/var/lib/myapp/fedcl";
//   options.memory_budget_bytes = 48 << 20;
//   absl::StatusOr<std::unique_ptr<fedcl::Client>> client = fedcl::Client::Create(options);
//   if (!client.ok()) ...;
//   (*client)->LoadBackbone("/usr/share/myapp/backbone.ckpt");   // or let Sync download it
//   (*client)->Learn(pixels, labels);                 // never waits for the network
//   (*client)->Predict(pixels, absl::MakeSpan(predictions));
//   absl::StatusOr<fedcl::SyncResult> synced = (*client)->Sync();   // when the app has a network
//
// Images are row-major float arrays, input_size() values per image (28·28 for the Fashion-MNIST
// backbones fedcl-pretrain writes), pixels in [0, 1]; the SDK standardises them the way the
// backbone was trained. Labels are class indices in [0, num_classes()).
//
// What the device learns: a frozen pretrained backbone with parameter-efficient modules and a
// head (ClientOptions::method). Learn takes one SGD step on the modules the method trains (or,
// with LearnOptions, one per batch over epochs, and can be cancelled between batches, undoing the
// whole call).
// Between syncs, learning is committed to storage every `autosave_batches` batches (and by
// Save): a bounded on-disk queue of deltas, the oldest dropped first when it is full (counted
// in ClientStats). Sync, when the server has a round open, downloads the module versions that
// changed, re-bases the queued learning on them (new values + queued deltas) and submits the
// queued deltas for that round. A round that closes before the update arrives refuses it; the
// learning stays queued for the next round the device joins.
//
// Persistence: <storage_dir>/device_state is replaced atomically on every save, the previous
// good copy kept as device_state.prev. A state file that is damaged is reported (log and
// ClientStats::state_set_aside), renamed to device_state.corrupt, and the device falls back to
// device_state.prev, or to the modules the server sends at the next sync. The backbone is cached
// as <storage_dir>/backbone.ckpt. A download cut short (a lost link, the app killed) keeps its
// verified chunks in <storage_dir>/downloads, and the next sync, in this process or a later one,
// resumes it from there.
//
// Memory: memory_budget_bytes bounds what fedcl itself holds (model, modules, the re-base copies,
// the queue in memory, and the working buffers of a batch, estimated from the model's shape;
// the layers keep the buffers of the largest batch so far between calls, and they stay counted).
// Learn and Adapt refuse a batch that would exceed it with ResourceExhausted, changing nothing;
// Predict works through a large batch in chunks that fit, and refuses only when one image does
// not fit. Every check on a batch's size (empty, pixels.size() against the count, the budget)
// comes before any pixel or label is read, so a span longer than its memory (the C API builds
// them from a caller's count) is refused by the budget before it is read.
//
// Errors are absl::Status values with a message naming what was wrong: InvalidArgument for bad
// options or input, FailedPrecondition for calls made in the wrong state (no backbone yet),
// ResourceExhausted for the memory budget, Unavailable / DeadlineExceeded when the server cannot
// be reached, DataLoss for damaged files or downloads, Unauthenticated / PermissionDenied for a
// bad token. No exception leaves the SDK.
//
// Thread safety: a Client may be used from several threads at once. Learn, Predict, Adapt, Save
// and LoadBackbone are serialised on the model (one runs at a time); Sync and the background
// sync hold the model only to install modules and to take a snapshot of the queue, never across
// a network call, so learning and prediction proceed while a sync waits on the server. Stats,
// SyncStatus and CancelSync may be called at any time from any thread. Callbacks (log, progress)
// run on the calling thread or on the background sync's thread, never under an SDK lock the
// callback could need; they must not destroy the Client.
#ifndef FEDCL_CLIENT_INCLUDE_FEDCL_CLIENT_H_
#define FEDCL_CLIENT_INCLUDE_FEDCL_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace fedcl {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
// Receives the SDK's messages; the SDK never prints. Called from any SDK thread.
using LogCallback = std::function<void(LogLevel level, absl::string_view message)>;

struct ClientOptions {
  // The server as a gRPC target ("host:port"); empty: the device learns and predicts offline
  // and Sync fails with FailedPrecondition.
  std::string server_address;
  // PEM root certificates to check the server against; empty = plaintext (loopback only).
  std::string tls_ca_file;
  // The name in the server's certificate when it differs from the address's host.
  std::string tls_server_name;
  // Bearer token of this client.
  std::string token;
  uint64_t client_id = 0;
  // Classes the device predicts; 0 = the backbone checkpoint's head. Must match the server's.
  int num_classes = 0;
  // Where the device's state and the backbone cache live (created if missing). Required; one
  // directory per client.
  std::string storage_dir;
  // Bytes fedcl may hold (see the top of this file); > 0.
  int64_t memory_budget_bytes = int64_t{48} << 20;
  // Threads one Predict call may use, in [1, 64]: a batch of several images is split across the
  // learner and threads − 1 copies of it (each about 1 MiB for the small ViT, counted in the
  // budget), computed at once by a fixed pool of threads; the results are those of one thread.
  // Learning and adaptation run on the calling thread.
  int threads = 1;
  // The continual learner (core/cl/learner.h; the server's modules must be the ones the method
  // shares, by name and shape):
  //   "sequential_adapter" (default)  a bottleneck adapter on the last two blocks and the head;
  //                                    server: "adapter" (PET kind adapter, bottleneck 8, sites
  //                                    blocks.2 and blocks.3) and "head";
  //   "linear_head"                    the head alone on the frozen backbone; server: "head";
  //   "simple_cil"                     SimpleCIL class prototypes of the frozen features, no
  //                                    training; they stay on the device (the server's "head"
  //                                    is only held);
  //   "fed_simple_cil"                 SimpleCIL whose class feature sums and counts the server
  //                                    sums exactly across devices; server: "class_statistics"
  //                                    (role class_statistics);
  //   "lae"                            LAE: an online adapter on the first two blocks, shared,
  //                                    and its offline EMA on the device; predictions are the
  //                                    max-of-softmax ensemble of both; server: "adapter" (sites
  //                                    blocks.0 and blocks.1) and "head";
  //   "fedins"                         FedIns' instance pool of SSF sets and heads with keys;
  //                                    server: fedins { pool_size: fedins_pool_size };
  //   "sema" / "sema_replay"           self-expansion: mixtures of adapters on the last two
  //                                    blocks that grow when the data shifts (threads must be
  //                                    1); server: "head" and pool { expandable_blocks: [2, 3]
  //                                    base_experts: true }. A SEMA device proposes each adapter
  //                                    it grows to the server's pool at its next sync, runs the
  //                                    adapters other devices grew that the pool sends it
  //                                    (within its growth budget), and keeps its mixtures,
  //                                    descriptors and pending proposals in the device state.
  // What each method keeps besides its modules (LAE's offline module, SimpleCIL's class sums,
  // the task counters) is kept in the device state too.
  std::string method = "sequential_adapter";
  // The method's own knobs as `key: value` pairs (a text proto of scalar fields and lists),
  // e.g. "expansion_tau: 1.5 new_module_steps: 120" for sema, "adapter_bottleneck: 16" for
  // sequential_adapter; every method's knobs are listed in its file under core/cl/methods/.
  // Keys given here win over the method-specific fields below (kept for existing devices); an
  // unknown key or a bad value fails Client::Create with InvalidArgument naming it.
  std::string method_options;
  // SEMA's knobs (algorithms.md §4): training steps of a new adapter, the expansion threshold τ
  // on the batch-mean z-score, and the cap on adapters per block (a growth past it is refused
  // and counted in ClientStats::growth_refusals).
  int sema_new_module_steps = 150;
  double sema_expansion_tau = 2.0;
  int sema_max_adapters_per_block = 4;
  // LAE's offline module moves lae_fraction_per_task of the way to the online one over a task
  // of lae_steps_per_task Learn batches. Without BeginTask, the first "task" ends (and the
  // offline module starts) after lae_steps_per_task batches.
  int lae_steps_per_task = 300;
  double lae_fraction_per_task = 0.1;
  // FedIns: sets in the instance pool (the server's fedins.pool_size) and sets per instance.
  int fedins_pool_size = 8;
  int fedins_top_k = 2;
  float learning_rate = 0.05f;
  // The OOD detector behind the scores predictions carry (after FitDetector), by name: "energy"
  // (default), "max_softmax", "mahalanobis" (reads labels), "knn", and on a ViT backbone "hdc"
  // (reads labels) and "rd_zscore"; any detector fedcl registers.
  std::string ood_detector = "energy";
  // Its options as `key: value` pairs, e.g. "k: 20, max_samples: 5000" for knn (empty = its
  // defaults); an unknown key or a bad value fails Client::Create with InvalidArgument.
  std::string ood_options;
  // Bound of the on-disk queue of learning not yet submitted, in bytes (>= 0; 0 keeps only the
  // latest commit).
  int64_t offline_queue_bytes = int64_t{4} << 20;
  // Learn batches between automatic commits to storage (>= 1).
  int autosave_batches = 16;
  // Deadline of each call to the server (> 0).
  absl::Duration call_timeout = absl::Seconds(30);
  // Seeds the modules' initial values and minibatch randomness.
  uint64_t seed = 1;
  // Messages; null discards them.
  LogCallback log;

  // Device conditions: the app's report of what the device is doing now, asked at the start of
  // every Learn, Adapt and Sync (StartSync included). Null: every condition holds. A call whose
  // requirements below are not met returns FailedPrecondition naming the missing condition
  // ("not eligible to learn: the device is not charging"), changes nothing and is counted in
  // ClientStats::ineligible_calls; learning already queued stays queued.
  struct Conditions {
    bool charging = true;
    bool unmetered_network = true;  // Wi-Fi or wired, not a metered mobile link
    bool idle = true;               // the user is not using the device
  };
  std::function<Conditions()> conditions;
  // What Learn and Adapt, and what Sync and StartSync, need: each condition set true here must
  // hold (by default none is needed).
  Conditions learn_requires{.charging = false, .unmetered_network = false, .idle = false};
  Conditions sync_requires{.charging = false, .unmetered_network = false, .idle = false};
};

struct Prediction {
  int32_t label = 0;
  float confidence = 0.0f;  // probability of `label`
  float ood_score = 0.0f;   // larger = more unusual
  bool ood = false;         // above the detector's 95%-TPR threshold (after FitDetector)
};

struct LearnResult {
  float loss = 0.0f;           // mean training loss over the call's batches
  int64_t batches_queued = 0;  // batches learned since the last submission
  int64_t batches = 0;         // SGD steps this call took
};

// Stops a Learn call between two of its batches (LearnOptions::cancel). Cancel may be called from
// any thread at any time; the token stays cancelled until Reset. Not copyable: share it by
// reference.
class CancelToken {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;
  void Cancel() { cancelled_.store(true, std::memory_order_release); }
  void Reset() { cancelled_.store(false, std::memory_order_release); }
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> cancelled_{false};
};

// How one Learn call goes through its images.
struct LearnOptions {
  // Images per SGD step, in the order given (the last step takes the rest); 0 = all of them in
  // one step, as the two-argument Learn does. >= 0.
  int64_t batch_size = 0;
  // Passes over the images, in [1, 1000].
  int epochs = 1;
  // Asked before every batch. Once it is cancelled, the call undoes everything it did and returns
  // Cancelled: the modules, the queued learning, the method's state (LAE's offline module,
  // SimpleCIL's sums, SEMA's mixtures and adapters it grew), the task, the counters and the
  // stored state are as they were before the call, and so are the optimizer's momentum and its
  // random draws, except that a SEMA device's momentum starts afresh (its restored mixtures are new
  // objects, as after a restart). The fitted OOD detector is kept. A call cancelled before its
  // first batch changes nothing. Null: the call cannot be cancelled (and keeps no copy to undo).
  const CancelToken* cancel = nullptr;
  // Called after each batch with the batches done and the call's total (may be null); it runs on
  // the calling thread with the model locked, so it must not call into the Client (Cancel on a
  // token is fine).
  std::function<void(int64_t done, int64_t total)> on_batch;
};

struct AdaptResult {
  int64_t samples = 0;       // in the batch
  int64_t samples_used = 0;  // that passed the entropy filters and were learned from
  float mean_entropy = 0.0f;
};

// Where a sync is.
struct SyncProgress {
  enum class Stage { kIdle, kConnecting, kDownloading, kSubmitting, kDone, kFailed };
  Stage stage = Stage::kIdle;
  int64_t bytes_done = 0;   // downloaded in this sync so far
  int64_t bytes_total = 0;  // expected in this sync (0 until known)
};
absl::string_view SyncStageName(SyncProgress::Stage stage);

struct SyncResult {
  // The round the server had open, or -1 if it asked the device to wait.
  int64_t round = -1;
  // The queued learning was acknowledged for `round` (then the queue is empty).
  bool submitted = false;
  // The round closed before the update arrived: the learning stays queued.
  bool round_closed = false;
  int64_t modules_downloaded = 0;
  int64_t bytes_downloaded = 0;
  int64_t bytes_uploaded = 0;
  // When the server suggests asking again (after a wait, or after submitting).
  absl::Duration retry_after = absl::ZeroDuration();
};

struct ClientStats {
  int64_t learn_batches = 0;  // over the device's life (persisted)
  int64_t learned_samples = 0;
  int64_t predictions = 0;  // since Create
  int64_t adapt_batches = 0;
  int64_t syncs = 0;          // since Create, successful
  int64_t submissions = 0;    // acknowledged, over the device's life
  int64_t rounds_closed = 0;  // submissions refused because their round had closed
  int64_t queue_records = 0;  // committed deltas waiting to be submitted
  int64_t queue_bytes = 0;
  int64_t queue_records_dropped = 0;  // oldest records dropped when the queue was full (life)
  int64_t memory_used_bytes = 0;      // fedcl's estimate right now, retained buffers included
  int64_t memory_budget_bytes = 0;
  int64_t memory_refusals = 0;  // calls refused with ResourceExhausted since Create
  int64_t last_round = -1;      // the last round a submission was acknowledged for
  bool backbone_loaded = false;
  bool state_restored = false;     // Create read a stored state
  bool state_set_aside = false;    // Create found a corrupt state file and set it aside
  bool state_from_backup = false;  // ... and restored device_state.prev instead
  // SEMA: adapters in the mixtures now (the first ones, grown and pooled), growths refused by
  // the budget since Create, and grown adapters not yet proposed to the server.
  int64_t adapters = 0;
  int64_t growth_refusals = 0;
  int64_t proposals_pending = 0;
  // Learn, Adapt and Sync calls refused since Create because the device's conditions did not
  // allow them (ClientOptions::conditions).
  int64_t ineligible_calls = 0;
};

class Client {
 public:
  // Checks the options, creates storage_dir, reads the stored state (see the top of this file)
  // and the TLS CA file, and loads the cached backbone if there is one. Never touches the
  // network.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const ClientOptions& options);
  // Stops and waits for a background sync; does not save (call Save first).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Loads a backbone checkpoint (written by fedcl-pretrain or downloaded from the server) and
  // caches it in storage_dir. Modules stored for another backbone are dropped. InvalidArgument /
  // DataLoss for a file that is not a checkpoint; FailedPrecondition when the device has synced
  // with a server whose backbone differs.
  absl::Status LoadBackbone(const std::string& checkpoint_path);

  // One learning step on `count` images (pixels.size() == count · input_size()) and their labels.
  absl::StatusOr<LearnResult> Learn(absl::Span<const float> pixels,
                                    absl::Span<const int32_t> labels);
  // The same images in batches of options.batch_size over options.epochs passes, one SGD step
  // each, exactly as that many one-batch Learn calls would learn them; cancellable between
  // batches (LearnOptions::cancel). The memory budget applies to one batch. The model stays
  // locked for the whole call: a sync waits for it to end (or be cancelled) before it installs
  // anything. Every input is checked before the first batch (labels against the current task).
  absl::StatusOr<LearnResult> Learn(absl::Span<const float> pixels,
                                    absl::Span<const int32_t> labels, const LearnOptions& options);
  // Predicts out.size() images (pixels.size() == out.size() · input_size()) into `out`
  // (caller-owned).
  absl::Status Predict(absl::Span<const float> pixels, absl::Span<Prediction> out);
  // Label-free adaptation on unlabelled images (entropy minimisation on normalisation and
  // scale/shift parameters, with CEMA's sample filters).
  absl::StatusOr<AdaptResult> Adapt(absl::Span<const float> pixels);
  // Fits the OOD detector on in-distribution images with labels and calibrates its threshold at
  // 95% TPR.
  absl::Status FitDetector(absl::Span<const float> pixels, absl::Span<const int32_t> labels);
  // Class-incremental learning: the labelled batches from now on hold these classes (empty: any
  // class). Learning then moves only their logits, as the continual methods do within a task,
  // and a SEMA device's classes from earlier tasks keep their head rows (§4.4). Persisted.
  // InvalidArgument for a class outside [0, num_classes()), and Learn refuses a label outside
  // the task's classes; FailedPrecondition before a backbone is loaded.
  absl::Status BeginTask(absl::Span<const int32_t> classes);

  // Synchronises with the server once: join if needed, get the backbone if the device has none,
  // and if a round is open, download, re-base and submit. Blocks for the network calls (each
  // bounded by call_timeout). Unavailable when the server cannot be reached: nothing is lost.
  absl::StatusOr<SyncResult> Sync();
  // The same on a background thread; `on_progress` (may be null) hears every stage change.
  // FailedPrecondition if a sync is already running.
  absl::Status StartSync(std::function<void(const SyncProgress&)> on_progress = nullptr);
  SyncProgress SyncStatus() const;
  // Waits for the background sync and returns its result; FailedPrecondition if none was
  // started since the last wait.
  absl::StatusOr<SyncResult> WaitSync();
  // Makes a running sync return soon with Cancelled; learning already queued stays queued.
  void CancelSync();

  // Commits learning not yet committed and writes the state atomically.
  absl::Status Save();
  ClientStats Stats() const;

  // Values per image, and classes; 0 until a backbone is loaded.
  int64_t input_size() const;
  int num_classes() const;

  // The implementation is private to the library; this constructor is its factory's.
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedcl

#endif  // FEDCL_CLIENT_INCLUDE_FEDCL_CLIENT_H_
