// fedcl::Client: the device's model, its learning and its durable state. The server side of a
// sync is in client_sync.cc; client_impl.h explains the three copies of each shared module.
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/sdk/client_impl.h"
#include "client/sdk/memory_estimate.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/envelope.h"
#include "proto/tensor_convert.h"

namespace fedcl {
namespace {

using sdk::BatchWorkingBytes;
using sdk::DeviceStateStore;
using sdk::kDeviceStateFormatVersion;
using sdk::ParameterSetBytes;

constexpr char kBackboneCacheName[] = "backbone.ckpt";
constexpr uint64_t kMaxCheckpointBytes = uint64_t{1} << 30;

std::string Mib(int64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

// A checkpoint's message and the hex SHA-256 of its payload (what the server's digest covers).
absl::StatusOr<std::pair<v1::ModelCheckpoint, std::string>> DecodeCheckpoint(
    const std::string& bytes, const std::string& source) {
  v1::ModelCheckpoint message;
  FEDCL_RETURN_IF_ERROR(
      proto::DecodeEnvelope(bytes, source, proto::PayloadKind::kModelCheckpoint, &message));
  return std::make_pair(
      std::move(message),
      proto::Sha256Hex(absl::string_view(bytes).substr(proto::kEnvelopeHeaderSize)));
}

// The checkpoint's model with `num_classes` outputs (0 = as stored): a new head keeps the stored
// rows it has room for.
absl::StatusOr<std::unique_ptr<nn::Model>> ModelWithClasses(std::unique_ptr<nn::Model> stored,
                                                            int num_classes, uint64_t seed) {
  if (num_classes == 0 || num_classes == stored->config().num_classes) return stored;
  nn::ModelConfig config = stored->config();
  config.num_classes = num_classes;
  FEDCL_ASSIGN_OR_RETURN(auto model, nn::Model::Create(config, seed));
  model->backbone().parameters().flat_values() = stored->backbone().parameters().flat_values();
  const nn::ParameterSet& from = stored->head().parameters();
  nn::ParameterSet& to = model->head().parameters();
  for (int t = 0; t < from.num_tensors() && t < to.num_tensors(); ++t) {
    const int64_t n = std::min(from.info(t).size, to.info(t).size);
    std::copy(from.values(t), from.values(t) + n, to.values(t));  // row-major: the first rows
  }
  return model;
}

}  // namespace

absl::string_view SyncStageName(SyncProgress::Stage stage) {
  switch (stage) {
    case SyncProgress::Stage::kIdle:
      return "idle";
    case SyncProgress::Stage::kConnecting:
      return "connecting";
    case SyncProgress::Stage::kDownloading:
      return "downloading";
    case SyncProgress::Stage::kSubmitting:
      return "submitting";
    case SyncProgress::Stage::kDone:
      return "done";
    case SyncProgress::Stage::kFailed:
      return "failed";
  }
  return "unknown";
}

int64_t Client::Impl::Record::bytes() const {
  int64_t n = 0;
  for (const Eigen::VectorXf& d : deltas) n += d.size() * int64_t{sizeof(float)};
  return n;
}

Client::Impl::Impl(const ClientOptions& options, ClientEnvironment environment)
    : options_(options),
      fs_(environment.fs != nullptr ? *environment.fs : base::FileSystem::Default()),
      transport_(std::move(environment.transport)),
      store_(fs_, options.storage_dir) {
  run_.memory_budget_bytes = options.memory_budget_bytes;
}

Client::Impl::~Impl() {
  CancelSync();
  if (sync_thread_.joinable()) sync_thread_.join();
}

void Client::Impl::Log(LogLevel level, const std::string& message) const {
  if (options_.log) options_.log(level, message);
}

absl::Status Client::Impl::Init() {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("client options: ", what));
  };
  if (options_.storage_dir.empty()) return bad("storage_dir is required");
  if (options_.memory_budget_bytes <= 0) return bad("memory_budget_bytes must be > 0");
  if (options_.num_classes < 0) return bad("num_classes must be >= 0");
  if (options_.threads < 1 || options_.threads > 64) return bad("threads must be in [1, 64]");
  if (!(options_.learning_rate > 0.0f) || !std::isfinite(options_.learning_rate))
    return bad("learning_rate must be a positive number");
  if (options_.offline_queue_bytes < 0) return bad("offline_queue_bytes must be >= 0");
  if (options_.autosave_batches < 1) return bad("autosave_batches must be >= 1");
  if (options_.call_timeout <= absl::ZeroDuration()) return bad("call_timeout must be > 0");
  absl::StatusOr<cl::ClMethod> method = cl::ParseClMethod(options_.method);
  if (!method.ok() ||
      (*method != cl::ClMethod::kSequentialAdapter && *method != cl::ClMethod::kLinearHead)) {
    return bad(absl::StrCat("method '", options_.method,
                            "' is not one the SDK runs (sequential_adapter, linear_head)"));
  }
  method_ = *method;
  absl::StatusOr<cl::OodScoreKind> ood = cl::ParseOodScoreKind(options_.ood_detector);
  if (!ood.ok() || (*ood != cl::OodScoreKind::kEnergy && *ood != cl::OodScoreKind::kMaxSoftmax &&
                    *ood != cl::OodScoreKind::kMahalanobis)) {
    return bad(absl::StrCat("ood_detector '", options_.ood_detector,
                            "' is not one of energy, max_softmax, mahalanobis"));
  }
  ood_kind_ = *ood;
  FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(options_.storage_dir));
  if (!options_.server_address.empty()) FEDCL_RETURN_IF_ERROR(CreateTransport());
  if (options_.threads > 1) workers_ = std::make_unique<sdk::WorkerPool>(options_.threads - 1);

  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_ASSIGN_OR_RETURN(DeviceStateStore::Loaded loaded,
                         store_.Load(options_.client_id, options_.method));
  if (loaded.set_aside) {
    Log(LogLevel::kError,
        absl::StrCat("the stored device state is unusable and was set aside as ", store_.path(),
                     DeviceStateStore::kCorruptSuffix, ": ", loaded.problem));
  }
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    run_.state_set_aside = loaded.set_aside;
    run_.state_from_backup = loaded.state.has_value() && loaded.from_backup;
    run_.state_restored = loaded.state.has_value();
  }
  stored_ = std::move(loaded.state);
  if (stored_.has_value()) {
    life_ = *stored_;  // the counters; the rest is applied with the backbone
    if (stored_->has_enrolled_round()) enrolled_round_ = stored_->enrolled_round();
    if (loaded.from_backup) Log(LogLevel::kWarning, "restored the previous good device state");
  }
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  if (!fs_.Exists(cache)) return absl::OkStatus();
  absl::StatusOr<std::string> bytes = fs_.ReadFile(cache, kMaxCheckpointBytes);
  absl::Status loaded_cache = bytes.ok() ? LoadBackboneBytesLocked(*bytes, cache) : bytes.status();
  if (absl::IsResourceExhausted(loaded_cache)) return loaded_cache;
  if (!loaded_cache.ok()) {
    // A damaged cache is not fatal: the next LoadBackbone or sync replaces it.
    Log(LogLevel::kWarning, absl::StrCat("the cached backbone is unusable (",
                                         loaded_cache.message(), "); load one or sync"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Client::Impl::SameBackboneAsCacheLocked(
    const v1::ModelCheckpoint& checkpoint) {
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs_.ReadFile(cache, kMaxCheckpointBytes));
  FEDCL_ASSIGN_OR_RETURN(auto cached, DecodeCheckpoint(bytes, cache));
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint ours,
                         proto::FromCheckpointProto(cached.first, cache));
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint theirs,
                         proto::FromCheckpointProto(checkpoint, "the new backbone"));
  const nn::ParameterSet& a = ours.model->backbone().parameters();
  const nn::ParameterSet& b = theirs.model->backbone().parameters();
  return ours.model->config().backbone == theirs.model->config().backbone &&
         a.CheckSameLayout(b).ok() && a.flat_values() == b.flat_values();
}

absl::Status Client::Impl::LoadBackbone(const std::string& path) {
  FEDCL_ASSIGN_OR_RETURN(std::string bytes, fs_.ReadFile(path, kMaxCheckpointBytes));
  std::lock_guard<std::mutex> lock(model_mu_);
  if (learner_ != nullptr) {
    // An app that loads its bundled backbone at every start must not lose the modules learned
    // on it because the cache now holds the server's copy of the same weights.
    FEDCL_ASSIGN_OR_RETURN(auto decoded, DecodeCheckpoint(bytes, path));
    if (decoded.second == backbone_digest_) return absl::OkStatus();
    absl::StatusOr<bool> same = SameBackboneAsCacheLocked(decoded.first);
    if (same.ok() && *same) return absl::OkStatus();
  }
  FEDCL_RETURN_IF_ERROR(LoadBackboneBytesLocked(bytes, path));
  const std::string cache = base::JoinPath(options_.storage_dir, kBackboneCacheName);
  if (path != cache) FEDCL_RETURN_IF_ERROR(fs_.WriteFileAtomically(cache, bytes));
  return SaveLocked();
}

absl::Status Client::Impl::LoadBackboneBytesLocked(const std::string& bytes,
                                                   const std::string& source) {
  FEDCL_ASSIGN_OR_RETURN(auto decoded, DecodeCheckpoint(bytes, source));
  const std::string& digest = decoded.second;
  if (server_.has_value() && server_->backbone_digest != digest) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", source, "' is not the backbone of the server this device syncs with"));
  }
  if (learner_ != nullptr && digest == backbone_digest_) return absl::OkStatus();
  FEDCL_RETURN_IF_ERROR(BuildLearnerLocked(decoded.first, source));
  backbone_digest_ = digest;
  RestoreLocked();
  std::lock_guard<std::mutex> stats(stats_mu_);
  run_.backbone_loaded = true;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<cl::Learner>> Client::Impl::MakeLearnerLocked(
    const v1::ModelCheckpoint& checkpoint, const std::string& source) const {
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint loaded,
                         proto::FromCheckpointProto(checkpoint, source));
  loaded.modules.clear();  // detach stored modules: the learner brings its own
  FEDCL_ASSIGN_OR_RETURN(
      auto model, ModelWithClasses(std::move(loaded.model), options_.num_classes, options_.seed));
  // The backbone is frozen: it needs no gradient buffer.
  model->backbone().parameters().DropGradients();
  const int64_t model_bytes = ParameterSetBytes(model->backbone().parameters()) +
                              ParameterSetBytes(model->head().parameters());
  if (model_bytes * options_.threads > options_.memory_budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model in '", source, "' holds ", Mib(model_bytes),
        options_.threads > 1 ? " per copy (" : "",
        options_.threads > 1
            ? absl::StrCat(options_.threads, " copies for ", options_.threads, " threads)")
            : "",
        ", more than the memory budget of ", Mib(options_.memory_budget_bytes)));
  }
  cl::LearnerOptions learner_options;
  learner_options.method = method_;
  learner_options.learning_rate = options_.learning_rate;
  learner_options.ood_score = ood_kind_;
  learner_options.seed = options_.seed;
  return cl::Learner::Create(std::move(model), learner_options);
}

absl::Status Client::Impl::BuildLearnerLocked(const v1::ModelCheckpoint& checkpoint,
                                              const std::string& source) {
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<cl::Learner> learner,
                         MakeLearnerLocked(checkpoint, source));
  std::vector<Replica> replicas(options_.threads - 1);
  for (Replica& r : replicas) {
    FEDCL_ASSIGN_OR_RETURN(r.learner, MakeLearnerLocked(checkpoint, source));
    r.shared = r.learner->SharedModules();
  }
  learner_ = std::move(learner);
  replicas_ = std::move(replicas);
  config_ = learner_->model().config();
  modules_.clear();
  queue_.clear();
  queue_bytes_ = 0;
  uncommitted_ = Record{};
  adapted_ = false;
  ++adapt_generation_;
  retained_working_bytes_ = 0;
  for (nn::ParameterSet* set : learner_->SharedModules()) {
    Module m;
    m.live = set;
    m.base = set->flat_values();
    m.committed = m.base;
    modules_.push_back(std::move(m));
  }
  return absl::OkStatus();
}

// Applies the stored state if it belongs to this backbone; otherwise the device starts from the
// learner's initial modules (and takes the server's at its next sync).
void Client::Impl::RestoreLocked() {
  if (!stored_.has_value()) return;
  v1::DeviceState state = *std::move(stored_);
  stored_.reset();
  if (state.backbone_digest() != backbone_digest_) {
    if (state.modules_size() > 0 || state.queue_size() > 0) {
      Log(LogLevel::kWarning,
          "the stored modules belong to another backbone: starting from the new backbone's");
    }
    return;
  }
  auto problem = [&](const std::string& what) {
    Log(LogLevel::kError, absl::StrCat("the stored device state does not fit the model (", what,
                                       "): starting from the backbone's modules"));
  };
  // Decode everything first; change nothing unless all of it fits.
  std::vector<Eigen::VectorXf> bases(modules_.size());
  std::vector<int64_t> versions(modules_.size(), -1);
  for (const v1::DeviceModule& stored : state.modules()) {
    const std::string& name = stored.base().name();
    Module* m = FindModuleLocked(name);
    if (m == nullptr) return problem(absl::StrCat("no module '", name, "'"));
    nn::ParameterSet values = *m->live;
    if (absl::Status s = proto::CopyValuesFromProto(stored.base(), &values); !s.ok())
      return problem(std::string(s.message()));
    const size_t i = static_cast<size_t>(m - modules_.data());
    bases[i] = values.flat_values();
    versions[i] = stored.version();
  }
  std::deque<Record> queue;
  for (const v1::QueuedDelta& q : state.queue()) {
    Record r;
    r.sequence = q.sequence();
    r.batches = q.batches();
    r.samples = q.samples();
    r.loss_sum = q.loss_sum();
    r.deltas.resize(modules_.size());
    for (size_t i = 0; i < modules_.size(); ++i)
      r.deltas[i] = Eigen::VectorXf::Zero(modules_[i].live->num_values());
    for (const v1::ParameterSet& d : q.deltas()) {
      Module* m = FindModuleLocked(d.name());
      if (m == nullptr)
        return problem(absl::StrCat("a queued delta for no module '", d.name(), "'"));
      nn::ParameterSet values = *m->live;
      if (absl::Status s = proto::CopyValuesFromProto(d, &values); !s.ok())
        return problem(std::string(s.message()));
      r.deltas[static_cast<size_t>(m - modules_.data())] = values.flat_values();
    }
    queue.push_back(std::move(r));
  }
  nn::ParameterSet adapted;
  if (state.has_adapted_backbone()) {
    adapted = learner_->model().backbone().parameters();
    if (absl::Status s = proto::CopyValuesFromProto(state.adapted_backbone(), &adapted); !s.ok())
      return problem(std::string(s.message()));
  }
  for (size_t i = 0; i < modules_.size(); ++i) {
    Module& m = modules_[i];
    if (bases[i].size() == 0) continue;  // not stored: keep the learner's initial values
    m.base = std::move(bases[i]);
    m.version = versions[i];
  }
  queue_ = std::move(queue);
  queue_bytes_ = 0;
  for (Module& m : modules_) m.committed = m.base;
  for (const Record& r : queue_) {
    queue_bytes_ += r.bytes();
    for (size_t i = 0; i < modules_.size(); ++i) modules_[i].committed += r.deltas[i];
  }
  for (Module& m : modules_) m.live->flat_values() = m.committed;
  if (state.has_adapted_backbone()) {
    learner_->model().backbone().parameters().flat_values() = adapted.flat_values();
    adapted_ = true;
    ++adapt_generation_;
  }
  next_sequence_ = std::max<uint64_t>(state.next_sequence(), 1);
  Log(LogLevel::kInfo,
      absl::StrCat("restored ", modules_.size(), " modules and ", queue_.size(), " queued deltas"));
}

Client::Impl::Module* Client::Impl::FindModuleLocked(absl::string_view name) {
  for (Module& m : modules_)
    if (m.live->name() == name) return &m;
  return nullptr;
}

absl::Status Client::Impl::CheckReadyLocked(absl::string_view what) const {
  if (learner_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot ", what, " before a backbone is loaded (LoadBackbone, or Sync)"));
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::CheckImages(absl::Span<const float> pixels, int64_t count) const {
  const int64_t per_image = config_.input_size();
  if (count <= 0) return absl::InvalidArgumentError("the batch has no images");
  if (static_cast<int64_t>(pixels.size()) != count * per_image) {
    return absl::InvalidArgumentError(absl::StrCat("the batch has ", pixels.size(),
                                                   " pixel values for ", count, " images of ",
                                                   per_image, " values each"));
  }
  for (float v : pixels) {
    if (!std::isfinite(v))
      return absl::InvalidArgumentError("the batch has a pixel value that is not finite");
  }
  return absl::OkStatus();
}

void Client::Impl::StageInput(absl::Span<const float> pixels, int64_t count) {
  StageInto(pixels, count, input_);
}

void Client::Impl::StageInto(absl::Span<const float> pixels, int64_t count,
                             nn::Matrix& into) const {
  const int64_t per_image = config_.input_size();
  if (into.rows() != count || into.cols() != per_image) into.resize(count, per_image);
  const Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> raw(
      pixels.data(), count, per_image);
  into = (raw.array() - data::kFashionMnistMean) / data::kFashionMnistStddev;
}

int64_t Client::Impl::HeldBytesLocked() const {
  if (learner_ == nullptr) return 0;
  int64_t bytes = ParameterSetBytes(learner_->model().backbone().parameters()) +
                  learner_->ModuleBytes() + queue_bytes_;
  for (const Module& m : modules_) bytes += 2 * m.base.size() * int64_t{sizeof(float)};
  bytes += input_.size() * int64_t{sizeof(float)};
  for (const Replica& r : replicas_) {
    bytes += ParameterSetBytes(r.learner->model().backbone().parameters()) +
             r.learner->ModuleBytes() + r.input.size() * int64_t{sizeof(float)};
  }
  return bytes;
}

int64_t Client::Impl::BatchBytes(int64_t count, bool training) const {
  return BatchWorkingBytes(config_, count, training) +
         count * config_.input_size() * int64_t{sizeof(float)};
}

absl::Status Client::Impl::CheckBudgetLocked(int64_t count, bool training, absl::string_view what) {
  const int64_t held = HeldBytesLocked();
  const int64_t needed = BatchBytes(count, training);
  // The layers keep their buffers after a call: what the largest call so far left stays held.
  const int64_t working = std::max(retained_working_bytes_, needed);
  if (held + working <= options_.memory_budget_bytes) {
    retained_working_bytes_ = working;
    return absl::OkStatus();
  }
  const int64_t fits =
      std::max<int64_t>(0, (options_.memory_budget_bytes - held) / BatchBytes(1, training));
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    ++run_.memory_refusals;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat(what, " a batch of ", count, " images needs about ", Mib(needed),
                   " on top of the ", Mib(held), " held, over the memory budget of ",
                   Mib(options_.memory_budget_bytes), "; batches of up to ", fits, " images fit"));
}

absl::StatusOr<LearnResult> Client::Impl::Learn(absl::Span<const float> pixels,
                                                absl::Span<const int32_t> labels) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("learn"));
  const int64_t count = static_cast<int64_t>(labels.size());
  FEDCL_RETURN_IF_ERROR(CheckImages(pixels, count));
  for (int32_t label : labels) {
    if (label < 0 || label >= config_.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", label, " is not a class in [0, ", config_.num_classes, ")"));
    }
  }
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(count, /*training=*/true, "learning"));
  StageInput(pixels, count);
  FEDCL_ASSIGN_OR_RETURN(cl::LearnStats stats, learner_->Learn(input_, labels));
  if (!std::isfinite(stats.loss)) {
    // A diverged step would poison every later one and the server's aggregate: undo it.
    for (Module& m : modules_) m.live->flat_values() = m.committed;
    return absl::InternalError(
        "the learning step diverged (non-finite loss); the uncommitted learning was discarded");
  }
  ++uncommitted_.batches;
  uncommitted_.samples += count;
  uncommitted_.loss_sum += stats.loss;
  life_.set_learn_batches(life_.learn_batches() + 1);
  life_.set_learned_samples(life_.learned_samples() + count);
  if (uncommitted_.batches >= options_.autosave_batches) FEDCL_RETURN_IF_ERROR(SaveLocked());
  LearnResult result;
  result.loss = stats.loss;
  for (const Record& r : queue_) result.batches_queued += r.batches;
  result.batches_queued += uncommitted_.batches;
  return result;
}

absl::Status Client::Impl::Predict(absl::Span<const float> pixels, absl::Span<Prediction> out) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("predict"));
  const int64_t count = static_cast<int64_t>(out.size());
  FEDCL_RETURN_IF_ERROR(CheckImages(pixels, count));
  // The largest chunk that fits the budget; one image that does not fit is refused.
  int64_t chunk = count;
  const int64_t held = HeldBytesLocked();
  while (chunk > 1 && held + std::max(retained_working_bytes_, BatchBytes(chunk, false)) >
                          options_.memory_budget_bytes)
    chunk = (chunk + 1) / 2;
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(chunk, false, "predicting"));
  const int64_t per_image = config_.input_size();
  for (int64_t start = 0; start < count; start += chunk) {
    const int64_t n = std::min(chunk, count - start);
    FEDCL_RETURN_IF_ERROR(PredictSplitLocked(pixels, start, n, out));
  }
  std::lock_guard<std::mutex> stats(stats_mu_);
  run_.predictions += count;
  return absl::OkStatus();
}

absl::Status Client::Impl::PredictSplitLocked(absl::Span<const float> pixels, int64_t start,
                                              int64_t count, absl::Span<Prediction> out) {
  const int64_t per_image = config_.input_size();
  const int parts = static_cast<int>(std::min<int64_t>(count, 1 + replicas_.size()));
  // Part p predicts rows [first(p), first(p + 1)) of the chunk; part 0 on the learner itself.
  auto first = [&](int p) { return start + count * p / parts; };
  // Each replica first takes what the learner has learned: its shared modules always (a few KiB),
  // its backbone when adaptation changed the learner's.
  for (int p = 1; p < parts; ++p) {
    Replica& r = replicas_[p - 1];
    for (size_t i = 0; i < modules_.size(); ++i)
      r.shared[i]->flat_values() = modules_[i].live->flat_values();
    if (r.adapt_generation != adapt_generation_) {
      r.learner->model().backbone().parameters().flat_values() =
          learner_->model().backbone().parameters().flat_values();
      r.adapt_generation = adapt_generation_;
    }
  }
  absl::Status errors[64];
  auto run = [&](int p) {
    const int64_t rows = first(p + 1) - first(p);
    const absl::Span<const float> part = pixels.subspan(first(p) * per_image, rows * per_image);
    cl::Learner& learner = p == 0 ? *learner_ : *replicas_[p - 1].learner;
    nn::Matrix& input = p == 0 ? input_ : replicas_[p - 1].input;
    std::vector<cl::Prediction>& predictions = p == 0 ? scratch_ : replicas_[p - 1].predictions;
    StageInto(part, rows, input);
    predictions.resize(rows);
    errors[p] = learner.PredictInto(input, absl::MakeSpan(predictions));
  };
  if (parts == 1) {
    run(0);
  } else {
    workers_->Run(parts, run);
  }
  for (int p = 0; p < parts; ++p) {
    FEDCL_RETURN_IF_ERROR(errors[p]);
    const std::vector<cl::Prediction>& predictions =
        p == 0 ? scratch_ : replicas_[p - 1].predictions;
    for (int64_t i = 0; i < first(p + 1) - first(p); ++i) {
      const cl::Prediction& q = predictions[i];
      out[first(p) + i] = Prediction{
          .label = q.label, .confidence = q.confidence, .ood_score = q.ood_score, .ood = q.ood};
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<AdaptResult> Client::Impl::Adapt(absl::Span<const float> pixels) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("adapt"));
  const int64_t per_image = std::max<int64_t>(1, config_.input_size());
  const int64_t count = static_cast<int64_t>(pixels.size()) / per_image;
  FEDCL_RETURN_IF_ERROR(CheckImages(pixels, count));
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(count, /*training=*/true, "adapting on"));
  StageInput(pixels, count);
  FEDCL_ASSIGN_OR_RETURN(cl::AdaptStep step, learner_->Adapt(input_));
  if (step.used > 0) {
    adapted_ = true;
    ++adapt_generation_;
  }
  life_.set_adapt_batches(life_.adapt_batches() + 1);
  return AdaptResult{.samples = step.seen,
                     .samples_used = step.used,
                     .mean_entropy = static_cast<float>(step.entropy)};
}

absl::Status Client::Impl::FitDetector(absl::Span<const float> pixels,
                                       absl::Span<const int32_t> labels) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("fit the detector"));
  const int64_t count = static_cast<int64_t>(labels.size());
  FEDCL_RETURN_IF_ERROR(CheckImages(pixels, count));
  if (count < 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("fitting the detector needs at least 10 images, not ", count));
  }
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(count, /*training=*/false, "fitting the detector on"));
  StageInput(pixels, count);
  // Fit on the first 80%, calibrate the 95%-TPR threshold on the rest.
  const int64_t fit = count * 4 / 5;
  const nn::Matrix images = input_;
  FEDCL_RETURN_IF_ERROR(learner_->FitDetector(images.topRows(fit), labels.subspan(0, fit),
                                              images.bottomRows(count - fit)));
  // The replicas score with detectors of their own, fitted the same way on the same model.
  for (Replica& r : replicas_) {
    for (size_t i = 0; i < modules_.size(); ++i)
      r.shared[i]->flat_values() = modules_[i].live->flat_values();
    r.learner->model().backbone().parameters().flat_values() =
        learner_->model().backbone().parameters().flat_values();
    r.adapt_generation = adapt_generation_;
    FEDCL_RETURN_IF_ERROR(r.learner->FitDetector(images.topRows(fit), labels.subspan(0, fit),
                                                 images.bottomRows(count - fit)));
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::CommitLocked() {
  if (uncommitted_.batches == 0) return absl::OkStatus();
  Record r = std::move(uncommitted_);
  uncommitted_ = Record{};
  r.sequence = next_sequence_++;
  r.deltas.reserve(modules_.size());
  for (Module& m : modules_) {
    r.deltas.push_back(m.live->flat_values() - m.committed);
    m.committed = m.live->flat_values();
  }
  queue_bytes_ += r.bytes();
  queue_.push_back(std::move(r));
  EnforceQueueBoundLocked();
  return absl::OkStatus();
}

void Client::Impl::EnforceQueueBoundLocked() {
  // The newest record always stays: dropping it would drop the learning just done.
  while (queue_.size() > 1 && queue_bytes_ > options_.offline_queue_bytes) {
    Record& oldest = queue_.front();
    // Folded into base: the device keeps it until it re-bases, the server never sees it.
    for (size_t i = 0; i < modules_.size(); ++i) modules_[i].base += oldest.deltas[i];
    queue_bytes_ -= oldest.bytes();
    queue_.pop_front();
    life_.set_queue_records_dropped(life_.queue_records_dropped() + 1);
  }
}

absl::Status Client::Impl::SaveLocked() {
  FEDCL_RETURN_IF_ERROR(CommitLocked());
  v1::DeviceState state = life_;
  state.clear_modules();
  state.clear_queue();
  state.clear_adapted_backbone();
  state.set_format_version(kDeviceStateFormatVersion);
  state.set_client_id(options_.client_id);
  state.set_method(options_.method);
  state.set_backbone_digest(backbone_digest_);
  if (enrolled_round_.has_value()) state.set_enrolled_round(*enrolled_round_);
  state.set_next_sequence(next_sequence_);
  nn::ParameterSet scratch;
  for (const Module& m : modules_) {
    scratch = *m.live;
    scratch.DropGradients();
    v1::DeviceModule* stored = state.add_modules();
    stored->set_version(m.version);
    scratch.flat_values() = m.base;
    proto::ToProto(scratch, stored->mutable_base());
  }
  for (const Record& r : queue_) {
    v1::QueuedDelta* q = state.add_queue();
    q->set_sequence(r.sequence);
    q->set_batches(r.batches);
    q->set_samples(r.samples);
    q->set_loss_sum(r.loss_sum);
    for (size_t i = 0; i < modules_.size(); ++i) {
      scratch = *modules_[i].live;
      scratch.DropGradients();
      scratch.flat_values() = r.deltas[i];
      proto::ToProto(scratch, q->add_deltas());
    }
  }
  if (adapted_)
    proto::ToProto(learner_->model().backbone().parameters(), state.mutable_adapted_backbone());
  if (learner_ == nullptr && stored_.has_value()) state = *stored_;  // nothing loaded yet
  return store_.Save(state);
}

absl::Status Client::Impl::Save() {
  std::lock_guard<std::mutex> lock(model_mu_);
  return SaveLocked();
}

ClientStats Client::Impl::Stats() const {
  ClientStats s;
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    s = run_;
  }
  std::lock_guard<std::mutex> lock(model_mu_);
  s.learn_batches = life_.learn_batches();
  s.learned_samples = life_.learned_samples();
  s.adapt_batches = life_.adapt_batches();
  s.submissions = life_.submissions();
  s.rounds_closed = life_.rounds_closed();
  s.queue_records_dropped = life_.queue_records_dropped();
  s.last_round = life_.submissions() > 0 ? life_.last_round() : -1;
  s.queue_records = static_cast<int64_t>(queue_.size());
  s.queue_bytes = queue_bytes_;
  s.memory_used_bytes = HeldBytesLocked() + retained_working_bytes_;
  return s;
}

int64_t Client::Impl::input_size() const {
  std::lock_guard<std::mutex> lock(model_mu_);
  return learner_ == nullptr ? 0 : config_.input_size();
}

int Client::Impl::num_classes() const {
  std::lock_guard<std::mutex> lock(model_mu_);
  return learner_ == nullptr ? 0 : config_.num_classes;
}

// ---- The public class: forwards ----------------------------------------------------------

absl::StatusOr<std::unique_ptr<Client>> CreateClientForTesting(const ClientOptions& options,
                                                               ClientEnvironment environment) {
  auto impl = std::make_unique<Client::Impl>(options, std::move(environment));
  FEDCL_RETURN_IF_ERROR(impl->Init());
  return std::make_unique<Client>(std::move(impl));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const ClientOptions& options) {
  return CreateClientForTesting(options, ClientEnvironment{});
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::Status Client::LoadBackbone(const std::string& path) { return impl_->LoadBackbone(path); }
absl::StatusOr<LearnResult> Client::Learn(absl::Span<const float> pixels,
                                          absl::Span<const int32_t> labels) {
  return impl_->Learn(pixels, labels);
}
absl::Status Client::Predict(absl::Span<const float> pixels, absl::Span<Prediction> out) {
  return impl_->Predict(pixels, out);
}
absl::StatusOr<AdaptResult> Client::Adapt(absl::Span<const float> pixels) {
  return impl_->Adapt(pixels);
}
absl::Status Client::FitDetector(absl::Span<const float> pixels, absl::Span<const int32_t> labels) {
  return impl_->FitDetector(pixels, labels);
}
absl::StatusOr<SyncResult> Client::Sync() { return impl_->Sync(); }
absl::Status Client::StartSync(std::function<void(const SyncProgress&)> on_progress) {
  return impl_->StartSync(std::move(on_progress));
}
SyncProgress Client::SyncStatus() const { return impl_->SyncStatus(); }
absl::StatusOr<SyncResult> Client::WaitSync() { return impl_->WaitSync(); }
void Client::CancelSync() { impl_->CancelSync(); }
absl::Status Client::Save() { return impl_->Save(); }
ClientStats Client::Stats() const { return impl_->Stats(); }
int64_t Client::input_size() const { return impl_->input_size(); }
int Client::num_classes() const { return impl_->num_classes(); }

}  // namespace fedcl
