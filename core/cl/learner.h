// A device's continual learner: one object that owns the device's view of the model — a frozen
// pretrained backbone, its parameter-efficient modules and its head — and learns from a stream.
// It is a shell around one continual method (method.h; the methods are in core/cl/methods/):
// the shell checks input, keeps the task bookkeeping, predicts with an OOD score, adapts without
// labels, and is what a device session syncs (SessionTrainer); the method decides what trains
// and how it predicts.
//
//   FEDCL_ASSIGN_OR_RETURN(auto learner, cl::Learner::Create(std::move(model),
//                                                            {.method = "sema"}));
//   learner->BeginTask({0, 1, 2, 3, 4});   // optional: classes of a class-incremental task
//   FEDCL_ASSIGN_OR_RETURN(cl::LearnStats s, learner->Learn(images, labels));
//   FEDCL_ASSIGN_OR_RETURN(auto predictions, learner->Predict(test_images));
//
// Methods (RegisteredMethodNames(), compared side by side on the same streams):
//   linear_head         frozen backbone, a linear head trained on everything;
//   simple_cil          SimpleCIL prototypes (§8.1), no training at all;
//   fed_simple_cil      the same prototypes from class sums and counts summed across devices;
//   sequential_adapter  one adapter per expandable block, fine-tuned on every task in turn;
//   lae                 LAE (§5): an online adapter and its offline EMA, max-of-softmax ensemble;
//   sema, sema_replay   SEMA (§4): mixtures of adapters that grow on a shift; sema_replay adds our
//                       router replay (core/cl/methods/sema/sema.h);
//   fedins              FedIns (§3): a pool of SSF sets and heads selected per instance;
//   recipe              the federated recipe of algorithms.md §1.4: trains the modules the server
//                       lists (head, backbone, PET) with the round's recipe — fedcl-client's and
//                       the federated simulator's devices.
//
// Predictions carry an OOD score (larger = more unusual) from the configured detector, fitted by
// FitDetector on in-distribution data and calibrated at 95% TPR; `ood` is the per-sample flag.
//
// Not thread-safe: a learner is one device's replica.
#ifndef FEDCL_CORE_CL_LEARNER_H_
#define FEDCL_CORE_CL_LEARNER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/cl/label_free.h"
#include "core/cl/learner_core.h"
#include "core/cl/method.h"
#include "core/cl/session_trainer.h"
#include "core/nn/model.h"
#include "core/ood/detectors.h"

namespace fedcl::cl {

struct LearnerOptions {
  // A registered method (Methods().Names()) and its own knobs, a scalar text proto parsed by the
  // method (e.g. "expansion_tau: 1.5 expandable_blocks: [2, 3]"; empty = its defaults).
  std::string method = "sema";
  std::string method_options;
  // Local SGD, one step per Learn batch (SEMA's recipe: momentum 0.9, weight decay 5e-4).
  float learning_rate = 0.01f;
  float momentum = 0.9f;
  float weight_decay = 5e-4f;
  // Bound on ModuleBytes() that methods which grow stay under (0 = none).
  int64_t module_memory_budget_bytes = 0;
  // For hosts that have no task boundaries (the SDK): a method that detects a shift starts a task
  // there (SEMA: each growth), so that the classes learned before become old.
  bool task_at_shift = false;
  // Label-free adaptation (Adapt).
  LabelFreeOptions label_free;
  // The detector behind Predict's OOD scores, by its registered name (ood::DetectorNames():
  // energy, max_softmax, mahalanobis, hdc, rd_zscore, knn, ...), and its options, a text proto
  // the detector parses ("k: 20" for knn; empty = its defaults). Seeded with `seed`.
  std::string ood_detector = "energy";
  std::string ood_options;
  uint64_t seed = 1;
  // InvalidArgument naming the first bad field (the method's options are checked by Create).
  absl::Status Validate() const;
};

struct Prediction {
  int label = 0;
  float confidence = 0.0f;  // the predicted class's probability (LAE: of the ensemble)
  float ood_score = 0.0f;
  bool ood = false;  // above the detector's 95%-TPR threshold (false until calibrated)
};

// What a learner keeps besides the values of the modules it shares, for a host that persists a
// device or copies it: the task counters, the classes earlier tasks taught and the current one
// has seen, and the method's private state.
struct LearnerProgress {
  int task = -1;  // BeginTask calls so far, minus one
  int64_t task_steps = 0;
  std::vector<bool> learned_classes, task_labels;  // empty, or one flag per class
  MethodState method;
};

// Registered method names, sorted.
std::vector<std::string> RegisteredMethodNames();

// A device session (core/device) keeps the learner's shared modules in sync with the server
// through SessionTrainer; a growing method's hooks are expansion().
class Learner final : public SessionTrainer {
 public:
  // Takes a model whose backbone (and head) come pretrained; the backbone is frozen for good
  // (the recipe method trains it only when the server lists it as a module). InvalidArgument for
  // bad options, an unknown method or options it refuses, or a model the method cannot run.
  static absl::StatusOr<std::unique_ptr<Learner>> Create(std::unique_ptr<nn::Model> model,
                                                         const LearnerOptions& options);
  ~Learner() override;

  // A new task with these classes (class-incremental: training only sees their logits). Empty =
  // every class.
  absl::Status BeginTask(std::vector<int> classes);
  // The current task's classes (empty = every class), and setting them without starting a task
  // (a host restoring a device). InvalidArgument for a class outside the model's.
  std::vector<int> TaskClasses() const { return core_.TaskClasses(); }
  absl::Status SetTaskClasses(const std::vector<int>& classes);
  // One step on a labelled batch (SimpleCIL: adds the batch to its class prototypes).
  // InvalidArgument for a batch without images, labels that do not match, or a label outside the
  // model's classes or the current task's.
  absl::StatusOr<LearnStats> Learn(nn::ConstMatrixRef images, absl::Span<const int32_t> labels);
  // A round of a recipe device starts (a fresh optimizer with the server's recipe); other
  // methods ignore it.
  absl::Status BeginRound(const nn::Recipe& recipe) { return method_->BeginRound(core_, recipe); }

  absl::StatusOr<std::vector<Prediction>> Predict(nn::ConstMatrixRef images);
  // The same into `out` (images.rows() entries). For single-forward methods with no detector or
  // one that reads only logits it allocates nothing once a batch of this size has been seen.
  absl::Status PredictInto(nn::ConstMatrixRef images, absl::Span<Prediction> out);
  // Label-free adaptation (entropy minimisation on LayerNorm/SSF with CEMA's filters); the
  // model's trainable flags are restored afterwards.
  absl::StatusOr<AdaptStep> Adapt(nn::ConstMatrixRef images);

  // Makes the detector options().ood_detector names, fits it on in-distribution data (labels for
  // those that read them) and calibrates it on `held_out`. FailedPrecondition for a detector that
  // reads hooks only a ViT has on another backbone; the detector's own errors otherwise. On error
  // the learner keeps the detector it had.
  absl::Status FitDetector(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
                           nn::ConstMatrixRef held_out);
  // OOD scores alone (same as Predict's). FailedPrecondition before FitDetector.
  absl::StatusOr<std::vector<float>> OodScores(nn::ConstMatrixRef images);
  // Every hook of an inference forward, for detectors fitted outside the learner.
  absl::StatusOr<Inspection> Inspect(nn::ConstMatrixRef images);

  // ---- SessionTrainer ----
  std::vector<nn::ParameterSet*> SharedModules() override { return method_->SharedModules(core_); }
  bool CanAdopt(const peft::ModuleSpec& spec) const override { return method_->CanAdopt(spec); }
  absl::StatusOr<nn::ParameterSet*> AdoptModule(const peft::ModuleSpec& spec,
                                                const nn::ParameterSet& values) override {
    return method_->AdoptModule(core_, spec, values);
  }
  ExpansionHooks* expansion() override { return method_->expansion(); }
  // How the server pools each of SharedModules() at creation (the server and the simulator
  // create the initial modules from these and the learner's initial values).
  std::vector<peft::ModuleSpec> SharedModuleSpecs() { return method_->SharedModuleSpecs(core_); }

  // See LearnerProgress. Restore replaces the learner's progress at any time (a restart, or a
  // predicting copy catching up); it checks everything first and changes nothing on
  // InvalidArgument (naming what does not fit).
  LearnerProgress ExportProgress() const;
  absl::Status RestoreProgress(const LearnerProgress& progress);

  // Undoing learning (the SDK's cancelled Learn): a mark holds the learner's state (its progress,
  // the current task's classes, the optimizer's momentum and the random generator); RollBack
  // restores it. The one exception: a method whose restore rebuilds its shared sets (SEMA's
  // mixtures) loses the momentum of the learning before the mark, as a restarted learner does.
  // The shared modules' values are the host's to restore (the device session's mark has them).
  // RollBack fails only if the method refuses its own export.
  struct Mark {
    LearnerProgress progress;
    std::vector<int> task_classes;
    nn::Sgd sgd;
    base::Rng rng;
    std::vector<const nn::ParameterSet*> shared;  // SharedModules() when marked
  };
  Mark MarkState();
  absl::Status RollBack(const Mark& mark);

  // A run-time knob of the method (Method::SetOption), e.g. LAE's "inference".
  absl::Status SetMethodOption(absl::string_view key, absl::string_view value) {
    return method_->SetOption(key, value);
  }

  const Method& method() const { return *method_; }
  absl::string_view method_name() const { return method_->name(); }
  const LearnerOptions& options() const { return options_; }
  void set_task_at_shift(bool on) { core_.mutable_options().task_at_shift = on; }
  nn::Model& model() { return core_.model(); }
  // Bytes of the device's modules (adapters, descriptors, head, offline copies).
  int64_t ModuleBytes() const;

 private:
  Learner(std::unique_ptr<nn::Model> model, const LearnerOptions& options,
          std::unique_ptr<Method> method);

  LearnerOptions options_;
  LearnerCore core_;
  std::unique_ptr<Method> method_;
  std::unique_ptr<LabelFreeAdapter> label_free_;
  std::unique_ptr<ood::OodDetector> detector_;
  ood::FeatureNeeds detector_needs_;  // what detector_ reads
  // PredictInto's buffers, kept between calls.
  nn::Matrix predict_probabilities_;
  std::vector<float> predict_scores_;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_LEARNER_H_
