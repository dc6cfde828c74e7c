// fedcl::Client's learning and prediction: input checks and staging, the memory budget, Learn,
// Predict (split across the replicas when threads > 1), Adapt and FitDetector.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "client/sdk/memory_estimate.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"

namespace fedcl {

using sdk::BatchWorkingBytes;
using sdk::Mib;
using sdk::ParameterSetBytes;

absl::Status Client::Impl::CheckReadyLocked(absl::string_view what) const {
  if (learner_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot ", what, " before a backbone is loaded (LoadBackbone, or Sync)"));
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::CheckBatchShape(absl::Span<const float> pixels, int64_t count) const {
  const int64_t per_image = config_.input_size();
  if (count <= 0) return absl::InvalidArgumentError("the batch has no images");
  if (count > std::numeric_limits<int64_t>::max() / per_image ||
      static_cast<int64_t>(pixels.size()) != count * per_image) {
    return absl::InvalidArgumentError(absl::StrCat("the batch has ", pixels.size(),
                                                   " pixel values for ", count, " images of ",
                                                   per_image, " values each"));
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::CheckPixelsFinite(absl::Span<const float> pixels) const {
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
                  learner_->ModuleBytes() + session_->HeldBytesLocked();
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

int64_t Client::Impl::FittingImagesLocked(bool training) const {
  return std::max<int64_t>(
      0, (options_.memory_budget_bytes - HeldBytesLocked()) / BatchBytes(1, training));
}

absl::Status Client::Impl::CheckBudgetLocked(int64_t count, bool training, absl::string_view what) {
  const int64_t held = HeldBytesLocked();
  const int64_t fits = FittingImagesLocked(training);
  // Comparing counts first: `count` may come from a C caller and be anything, and
  // BatchBytes(count) of a count beyond `fits` could overflow (and then pass).
  // The layers keep their buffers after a call: what the largest call so far left stays held.
  if (count <= fits && held + std::max(retained_working_bytes_, BatchBytes(count, training)) <=
                           options_.memory_budget_bytes) {
    return absl::OkStatus();
  }
  const int64_t per_image = BatchBytes(1, training);
  const int64_t needed = count <= std::numeric_limits<int64_t>::max() / per_image
                             ? count * per_image
                             : std::numeric_limits<int64_t>::max();
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    ++run_.memory_refusals;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat(what, " a batch of ", count, " images needs about ", Mib(needed),
                   " on top of the ", Mib(held), " held, over the memory budget of ",
                   Mib(options_.memory_budget_bytes), "; batches of up to ", fits, " images fit"));
}

void Client::Impl::RetainWorkingLocked(int64_t count, bool training) {
  retained_working_bytes_ = std::max(retained_working_bytes_, BatchBytes(count, training));
}

Client::Impl::LearnUndo Client::Impl::MarkLocked() {
  return LearnUndo{.learner = learner_->MarkState(),
                   .session = session_->MarkLearningLocked(),
                   .learn_batches = life_.learn_batches(),
                   .learned_samples = life_.learned_samples()};
}

absl::Status Client::Impl::RollBackLocked(const LearnUndo& undo, bool saved) {
  // The learner first: a SEMA restore rebuilds its mixtures, whose sets the session then finds
  // again by name.
  absl::Status status = learner_->RollBack(undo.learner);
  if (status.ok()) status = session_->RollBackLearningLocked(undo.session);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("undoing a cancelled learning call failed: ", status.message()));
  }
  life_.set_learn_batches(undo.learn_batches);
  life_.set_learned_samples(undo.learned_samples);
  // An autosave during the call stored some of its learning: store the state as it is again,
  // without committing what was uncommitted before the call (it stays uncommitted, as it was).
  return saved ? SaveLocked(/*commit=*/false) : absl::OkStatus();
}

absl::StatusOr<LearnResult> Client::Impl::Learn(absl::Span<const float> pixels,
                                                absl::Span<const int32_t> labels,
                                                const LearnOptions& options) {
  // Before the lock: the app's callback may call into the client.
  FEDCL_RETURN_IF_ERROR(CheckConditions(Activity::kLearn));
  if (options.batch_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LearnOptions.batch_size is ", options.batch_size, "; it must be >= 0"));
  }
  if (options.epochs < 1 || options.epochs > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("LearnOptions.epochs is ", options.epochs, "; it must be in [1, 1000]"));
  }
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("learn"));
  const int64_t count = static_cast<int64_t>(labels.size());
  // Every check on the count before any value is read (see CheckBatchShape).
  FEDCL_RETURN_IF_ERROR(CheckBatchShape(pixels, count));
  const int64_t batch = options.batch_size == 0 ? count : std::min(options.batch_size, count);
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(batch, /*training=*/true, "learning"));
  FEDCL_RETURN_IF_ERROR(CheckPixelsFinite(pixels));
  for (int32_t label : labels) {
    if (label < 0 || label >= config_.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", label, " is not a class in [0, ", config_.num_classes, ")"));
    }
  }
  const int64_t per_epoch = (count + batch - 1) / batch;
  const int64_t total = per_epoch * options.epochs;
  if (total > 1) {
    // A later batch must not find a label the task refuses after earlier ones were learned (a
    // growth's new task only widens the classes).
    const std::vector<int> task = learner_->TaskClasses();
    for (int32_t label : labels) {
      if (!task.empty() && std::find(task.begin(), task.end(), label) == task.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("label ", label, " is not one of the current task's classes"));
      }
    }
  }
  if (options.cancel != nullptr && options.cancel->cancelled()) {
    return absl::CancelledError("the learning call was cancelled before its first batch");
  }
  RetainWorkingLocked(batch, /*training=*/true);
  std::optional<LearnUndo> undo;
  if (options.cancel != nullptr && total > 1) undo = MarkLocked();
  const int64_t per_image = config_.input_size();
  bool saved = false;
  double loss_sum = 0.0;
  int64_t done = 0;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    for (int64_t start = 0; start < count; start += batch) {
      if (done > 0 && options.cancel != nullptr && options.cancel->cancelled()) {
        FEDCL_RETURN_IF_ERROR(RollBackLocked(*undo, saved));
        return absl::CancelledError(absl::StrCat("the learning call was cancelled after ", done,
                                                 " of its ", total,
                                                 " batches; nothing it learned was kept"));
      }
      const int64_t n = std::min(batch, count - start);
      StageInput(pixels.subspan(start * per_image, n * per_image), n);
      FEDCL_ASSIGN_OR_RETURN(cl::LearnStats stats,
                             learner_->Learn(input_, labels.subspan(start, n)));
      // A grown adapter becomes a module first, so that a diverged step is undone on it too.
      session_->AfterLearnLocked(n, stats.loss);
      if (!std::isfinite(stats.loss)) {
        // A diverged step would poison every later one and the server's aggregate: undo it.
        session_->DiscardUncommittedLocked();
        return absl::InternalError(
            "the learning step diverged (non-finite loss); the uncommitted learning was "
            "discarded");
      }
      life_.set_learn_batches(life_.learn_batches() + 1);
      life_.set_learned_samples(life_.learned_samples() + n);
      if (session_->UncommittedBatchesLocked() >= options_.autosave_batches) {
        FEDCL_RETURN_IF_ERROR(SaveLocked());
        saved = true;
      }
      loss_sum += stats.loss;
      ++done;
      if (options.on_batch) options.on_batch(done, total);
    }
  }
  LearnResult result;
  result.loss = static_cast<float>(loss_sum / static_cast<double>(done));
  result.batches = done;
  result.batches_queued = session_->QueuedBatchesLocked() + session_->UncommittedBatchesLocked();
  return result;
}

absl::Status Client::Impl::Predict(absl::Span<const float> pixels, absl::Span<Prediction> out) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("predict"));
  const int64_t count = static_cast<int64_t>(out.size());
  FEDCL_RETURN_IF_ERROR(CheckBatchShape(pixels, count));
  // The largest chunk that fits the budget; one image that does not fit is refused. A chunk
  // beyond `fits` is halved before BatchBytes could overflow on it.
  int64_t chunk = count;
  const int64_t held = HeldBytesLocked();
  const int64_t fits = FittingImagesLocked(/*training=*/false);
  while (chunk > 1 &&
         (chunk > fits || held + std::max(retained_working_bytes_, BatchBytes(chunk, false)) >
                              options_.memory_budget_bytes))
    chunk = (chunk + 1) / 2;
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(chunk, false, "predicting"));
  FEDCL_RETURN_IF_ERROR(CheckPixelsFinite(pixels));
  RetainWorkingLocked(chunk, /*training=*/false);
  for (int64_t start = 0; start < count; start += chunk) {
    const int64_t n = std::min(chunk, count - start);
    FEDCL_RETURN_IF_ERROR(PredictSplitLocked(pixels, start, n, out));
  }
  std::lock_guard<std::mutex> stats(stats_mu_);
  run_.predictions += count;
  return absl::OkStatus();
}

// What the learner has learned: its shared modules always (a few KiB), its backbone when
// adaptation changed the learner's since the replica last took it.
absl::Status Client::Impl::RefreshReplicaLocked(Replica& r) {
  const std::vector<nn::ParameterSet*> shared = learner_->SharedModules();
  for (size_t i = 0; i < shared.size(); ++i) r.shared[i]->flat_values() = shared[i]->flat_values();
  // What a method keeps to itself and predicts with (LAE's offline module, SimpleCIL's class
  // sums; a few KiB).
  if (learner_->method().prediction_reads_state())
    FEDCL_RETURN_IF_ERROR(r.learner->RestoreProgress(learner_->ExportProgress()));
  if (r.adapt_generation != adapt_generation_) {
    r.learner->model().backbone().parameters().flat_values() =
        learner_->model().backbone().parameters().flat_values();
    r.adapt_generation = adapt_generation_;
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::PredictSplitLocked(absl::Span<const float> pixels, int64_t start,
                                              int64_t count, absl::Span<Prediction> out) {
  const int64_t per_image = config_.input_size();
  const int parts = static_cast<int>(std::min<int64_t>(count, 1 + replicas_.size()));
  // Part p predicts rows [first(p), first(p + 1)) of the chunk; part 0 on the learner itself.
  auto first = [&](int p) { return start + count * p / parts; };
  for (int p = 1; p < parts; ++p) FEDCL_RETURN_IF_ERROR(RefreshReplicaLocked(replicas_[p - 1]));
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
  FEDCL_RETURN_IF_ERROR(CheckConditions(Activity::kLearn));
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("adapt"));
  const int64_t per_image = std::max<int64_t>(1, config_.input_size());
  const int64_t count = static_cast<int64_t>(pixels.size()) / per_image;
  FEDCL_RETURN_IF_ERROR(CheckBatchShape(pixels, count));
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(count, /*training=*/true, "adapting on"));
  FEDCL_RETURN_IF_ERROR(CheckPixelsFinite(pixels));
  RetainWorkingLocked(count, /*training=*/true);
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

absl::Status Client::Impl::BeginTask(absl::Span<const int32_t> classes) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("begin a task"));
  FEDCL_RETURN_IF_ERROR(learner_->BeginTask(std::vector<int>(classes.begin(), classes.end())));
  // The app marks its tasks: shifts no longer start one (which would clear its classes).
  app_tasks_ = true;
  learner_->set_task_at_shift(false);
  return SaveLocked();
}

absl::Status Client::Impl::FitDetector(absl::Span<const float> pixels,
                                       absl::Span<const int32_t> labels) {
  std::lock_guard<std::mutex> lock(model_mu_);
  FEDCL_RETURN_IF_ERROR(CheckReadyLocked("fit the detector"));
  const int64_t count = static_cast<int64_t>(labels.size());
  FEDCL_RETURN_IF_ERROR(CheckBatchShape(pixels, count));
  if (count < 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("fitting the detector needs at least 10 images, not ", count));
  }
  FEDCL_RETURN_IF_ERROR(CheckBudgetLocked(count, /*training=*/false, "fitting the detector on"));
  FEDCL_RETURN_IF_ERROR(CheckPixelsFinite(pixels));
  RetainWorkingLocked(count, /*training=*/false);
  StageInput(pixels, count);
  // Fit on the first 80%, calibrate the 95%-TPR threshold on the rest.
  const int64_t fit = count * 4 / 5;
  const nn::Matrix images = input_;
  FEDCL_RETURN_IF_ERROR(learner_->FitDetector(images.topRows(fit), labels.subspan(0, fit),
                                              images.bottomRows(count - fit)));
  // The replicas score with detectors of their own, fitted the same way on the same model.
  for (Replica& r : replicas_) {
    FEDCL_RETURN_IF_ERROR(RefreshReplicaLocked(r));
    FEDCL_RETURN_IF_ERROR(r.learner->FitDetector(images.topRows(fit), labels.subspan(0, fit),
                                                 images.bottomRows(count - fit)));
  }
  return absl::OkStatus();
}

}  // namespace fedcl
