// A device's continual learner: one object that owns the device's view of the model — a frozen
// pretrained backbone, its parameter-efficient modules and its head — and learns from a stream.
//
//   FEDCL_ASSIGN_OR_RETURN(auto learner, cl::Learner::Create(std::move(model), options));
//   learner->BeginTask({0, 1, 2, 3, 4});            // optional: classes of a class-incremental
//   task FEDCL_ASSIGN_OR_RETURN(cl::LearnStats s, learner->Learn(images, labels));
//   FEDCL_ASSIGN_OR_RETURN(auto predictions, learner->Predict(test_images));
//   for (cl::ModuleProposal& p : learner->TakeProposals()) { ... send to the server ... }
//
// Methods (ClMethod), compared side by side on the same streams:
//   linear_head         frozen backbone, a linear head trained on everything;
//   simple_cil          SimpleCIL prototypes (§8.1), no training at all;
//   sequential_adapter  one adapter per expandable block, fine-tuned on every task in turn;
//   lae                 LAE (§5): an online adapter on the first two blocks and its offline EMA,
//                       max-of-softmax ensemble at inference;
//   sema                SEMA (§4): mixtures of adapters at the expandable blocks that grow when
//                       every adapter's descriptor finds the stream unusual;
//   sema_replay         SEMA plus router replay, our extension: a growing block keeps, for each
//                       adapter it trained, the diagonal Gaussian of the token means it trained
//                       on (the statistics it proposes to the server), and while a new router
//                       row trains, samples drawn from the older adapters' Gaussians are routed
//                       to their own adapters (cross-entropy on the mixing weights). SEMA's new
//                       row sees only new data, so nothing stops it from taking over old inputs;
//                       this keeps old inputs on old adapters without storing any sample;
//   fedins              FedIns (§3): a pool of P SSF sets and heads with keys; each instance
//                       picks its top-k keys by cosine similarity to its query (the frozen
//                       backbone's feature, SSF off) and runs with the uniform mean of the
//                       selected sets. Instances that picked the same sets share one forward;
//                       one SGD step per batch on (1 − λ)·CE + λ·matching loss.
//
// SEMA on a stream (§4.4 adapted): the first adapter of each expandable block trains for
// `new_module_steps` steps. Then every labelled batch is first a detection batch: at each
// expandable block, from the first on, every adapter's batch-mean z-score (sema.h) above τ on
// `confirm_batches` consecutive batches grows that block by one adapter (at most one growth per
// detection), unless the growth budget refuses. A growing block trains its new adapter, its router
// row and the head for `new_module_steps` steps with every other adapter frozen (queuing a
// proposal for the server when it grows), then trains the new adapter's descriptor on the token
// means it buffered and freezes both, the descriptor with its loss records. Between growths only
// the head trains, and only for classes no earlier task taught (§4.4's mask of old classes; in a
// domain-incremental stream the head is fixed after the first task). At the growth cap or memory
// budget the block does not grow: the refusal is reported in LearnStats and counted, and the
// existing mixture serves the shifted data.
//
// Predictions carry an OOD score (larger = more unusual) from the configured detector, fitted by
// FitDetector on in-distribution data and calibrated at 95% TPR; `ood` is the per-sample flag.
//
// Not thread-safe: a learner is one device's replica.
#ifndef FEDCL_CORE_CL_LEARNER_H_
#define FEDCL_CORE_CL_LEARNER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/cl/accumulation.h"
#include "core/cl/adapter_mixture.h"
#include "core/cl/growth_budget.h"
#include "core/cl/label_free.h"
#include "core/cl/prototypes.h"
#include "core/cl/sema.h"
#include "core/cl/session_trainer.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"
#include "core/ood/detectors.h"
#include "core/peft/pet_module.h"

namespace fedcl::cl {

enum class ClMethod {
  kLinearHead,
  kSimpleCil,
  kSequentialAdapter,
  kLae,
  kSema,
  kSemaReplay,  // SEMA with router replay (below)
  kFedIns
};
inline bool IsSema(ClMethod m) { return m == ClMethod::kSema || m == ClMethod::kSemaReplay; }
absl::string_view ClMethodName(ClMethod method);
absl::StatusOr<ClMethod> ParseClMethod(absl::string_view name);

struct LearnerOptions {
  ClMethod method = ClMethod::kSema;
  // Local SGD (SEMA's recipe: momentum 0.9, weight decay 5e-4), one step per Learn batch.
  float learning_rate = 0.01f;
  float momentum = 0.9f;
  float weight_decay = 5e-4f;
  // Adapters (sequential_adapter, lae, sema).
  int adapter_bottleneck = 8;
  std::vector<int> expandable_blocks = {2, 3};  // sequential_adapter and sema
  std::vector<int> lae_blocks = {0, 1};
  // SEMA.
  int descriptor_bottleneck = 16;  // must compress the block width
  double expansion_tau = 2.0;
  int confirm_batches = 2;  // consecutive batches above τ before a block grows
  int new_module_steps = 150;
  int router_replay_samples = 32;  // sema_replay: Gaussian samples per old adapter and step
  int descriptor_epochs = 20;
  float descriptor_learning_rate = 0.01f;
  GrowthLimits growth;
  // For hosts that have no task boundaries (the SDK): each growth starts a new task (BeginTask
  // with every class), so the classes learned before the shift become old and §4.4's head mask
  // applies as it does when the host calls BeginTask.
  bool task_at_growth = false;
  // LAE: the offline module moves this fraction towards the online one over a task of
  // `lae_steps_per_task` steps (α = (1 − fraction)^(1/steps)); head-only warm-up steps per task.
  double lae_fraction_per_task = 0.1;
  int64_t lae_steps_per_task = 300;
  int lae_warmup_steps = 30;
  // For hosts that have no task boundaries (the SDK): while BeginTask was never called, the
  // offline module starts after this many steps, as it would at the second task (0 = only at
  // the second task).
  int64_t lae_untasked_task_steps = 0;
  // FedIns.
  int fedins_pool_size = 8;
  int fedins_top_k = 2;
  double fedins_matching_weight = 0.1;  // λ
  // Label-free adaptation (Adapt).
  LabelFreeOptions label_free;
  // The detector behind Predict's OOD scores, by its registered name (ood::DetectorNames():
  // energy, max_softmax, mahalanobis, hdc, rd_zscore, knn, ...), and its options, a text proto
  // the detector parses ("k: 20" for knn; empty = its defaults). Seeded with `seed`.
  std::string ood_detector = "energy";
  std::string ood_options;
  uint64_t seed = 1;
  absl::Status Validate() const;
};

struct Prediction {
  int label = 0;
  float confidence = 0.0f;  // the predicted class's probability (LAE: of the ensemble)
  float ood_score = 0.0f;
  bool ood = false;  // above the detector's 95%-TPR threshold (false until calibrated)
};

struct LearnStats {
  float loss = 0.0f;
  bool detected = false;  // this batch was used for detection
  int grown_block = -1;   // the block that grew on this batch, or -1
  absl::Status refused;   // a growth the budget refused (ResourceExhausted), else OK
};

// SEMA's device state, for a host that persists a device (the SDK): every adapter of every
// expandable block with what only this device has of it (its descriptor, frozen loss records and
// replay anchor), and the growth in progress. Export it between Learn calls; RestoreSemaState
// takes it into a learner just created with the same options and backbone, which then continues
// as the exported one would (SGD momentum and the detection window excepted: they restart empty).
struct SemaAdapterState {
  nn::ParameterSet expert;  // values and trainable flags
  // Adapters grown on this device have a descriptor; pooled ones from other devices do not.
  bool has_descriptor = false;
  nn::Matrix encoder, decoder;
  Eigen::VectorXf encoder_bias, decoder_bias;
  std::vector<float> losses;  // its loss records, oldest first
  bool records_frozen = false;
  std::vector<float> anchor_mean, anchor_var;  // empty when it has no anchor
};
struct SemaBlockState {
  int block = 0;                           // the ViT block
  std::vector<SemaAdapterState> adapters;  // in mixture order
  int growing_index = -1;                  // the adapter in training, or -1
  nn::Matrix growth_buffer;                // token means buffered for that adapter's descriptor
};
struct SemaState {
  std::vector<SemaBlockState> blocks;
  int growth_steps_left = 0;  // of the growth in progress (0: none)
  // The head mask of §4.4: classes earlier tasks taught, and those the current task has seen
  // (empty, or one flag per class).
  std::vector<bool> learned_classes, task_labels;
};

// What a learner keeps besides the modules it shares (SharedModules) and SEMA's mixtures
// (SemaState), for a host that persists a device or copies it: the task counters, the classes
// earlier tasks taught and the current one has seen, LAE's offline module once started, and
// SimpleCIL's per-class feature sums and counts (its prototypes are their means).
struct LearnerProgress {
  int task = -1;  // BeginTask calls so far, minus one
  int64_t task_steps = 0;
  std::vector<bool> learned_classes, task_labels;  // empty, or one flag per class
  std::optional<Eigen::VectorXf> lae_offline;      // LAE: the offline module's values
  nn::Matrix class_sums;                           // SimpleCIL: classes × feature dim, or empty
  std::vector<int64_t> class_counts;               // SimpleCIL: per class, or empty
};

// A device session (core/device) keeps the learner's shared modules in sync with the server
// through SessionTrainer; SEMA's growth hooks are ExpansionHooks (expansion() is null for the
// other methods).
class Learner final : public SessionTrainer, public ExpansionHooks {
 public:
  // Takes a model whose backbone (and head) come pretrained; the backbone is frozen for good.
  static absl::StatusOr<std::unique_ptr<Learner>> Create(std::unique_ptr<nn::Model> model,
                                                         const LearnerOptions& options);
  ~Learner();

  // A new task with these classes (class-incremental: training only sees their logits, as LAE
  // and SEMA do). Empty = every class. Starts LAE's offline module at the second task.
  absl::Status BeginTask(std::vector<int> classes);
  // The current task's classes (empty = every class), and setting them without starting a task
  // (a host restoring a device). InvalidArgument for a class outside the model's.
  std::vector<int> TaskClasses() const;
  absl::Status SetTaskClasses(const std::vector<int>& classes);
  // One step on a labelled batch (SimpleCIL: adds the batch to its class prototypes).
  absl::StatusOr<LearnStats> Learn(nn::ConstMatrixRef images, absl::Span<const int32_t> labels);
  absl::StatusOr<std::vector<Prediction>> Predict(nn::ConstMatrixRef images);
  // The same into `out` (images.rows() entries). For the single-forward methods (linear_head,
  // sequential_adapter, sema) with no detector or one that reads only logits (max_softmax,
  // energy) it allocates nothing once a batch of this size has been seen; the others go through
  // Predict.
  absl::Status PredictInto(nn::ConstMatrixRef images, absl::Span<Prediction> out);
  // Label-free adaptation (entropy minimisation on LayerNorm/SSF with CEMA's filters); the
  // model's trainable flags are restored afterwards.
  absl::StatusOr<AdaptStep> Adapt(nn::ConstMatrixRef images);

  // Makes the detector options().ood_detector names, fits it on in-distribution data (labels for
  // those that read them: mahalanobis, hdc) and calibrates it on `held_out`. FailedPrecondition
  // for a detector that reads hooks only a ViT has (the CLS tokens, the token means) on another
  // backbone; the detector's own errors otherwise. On error the learner keeps the detector it had.
  absl::Status FitDetector(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
                           nn::ConstMatrixRef held_out);
  // OOD scores alone (same as Predict's).
  absl::StatusOr<std::vector<float>> OodScores(nn::ConstMatrixRef images);

  // What the device shares with the server: the head and its adapters (sequential/LAE online),
  // or for SEMA every expert of every expandable block, named "block<b>/e<i>".
  std::vector<nn::ParameterSet*> SharedModules() override;
  ExpansionHooks* expansion() override { return IsSema(options_.method) ? this : nullptr; }
  // Proposals of adapters grown since the last call.
  std::vector<ModuleProposal> TakeProposals() override;
  // SEMA: replaces expert `index` of `block` by values from the server (merged group or the
  // federation's aggregate). InvalidArgument for an unknown block/index or a wrong layout.
  absl::Status ImportExpert(int block, int index, const nn::ParameterSet& values);
  // SEMA: adds an adapter another device grew (the router needs every adapter of the block's
  // mixture), frozen; returns its index. With the descriptor its founder trained (the form of
  // DescriptorToParameters), detection counts it like the device's own: a stream the pooled
  // adapter already serves no longer grows the block. The growth budget applies:
  // ResourceExhausted at the cap or past the memory budget; InvalidArgument for a descriptor
  // that does not fit; either adds nothing.
  absl::StatusOr<int> AddPooledExpert(int block, const nn::ParameterSet& values,
                                      const nn::ParameterSet* descriptor = nullptr) override;
  // SEMA: the descriptor of adapter `index` of `block` with its loss records
  // (DescriptorToParameters), once they are frozen: nullopt while the adapter trains, and for an
  // adapter without one (a pooled adapter that came without it).
  std::optional<nn::ParameterSet> ExpertDescriptor(int block, int index) const override;
  // SEMA: whether adapter `index` of `block` has a descriptor at all (trained, in training, or
  // pooled with one).
  bool ExpertHasDescriptor(int block, int index) const override;
  // SEMA: gives pooled adapter `index` of `block`, added without one, the descriptor its founder
  // trained (it reached the pool after the adapter reached this device). InvalidArgument for an
  // unknown adapter, one that has a descriptor, or a descriptor that does not fit;
  // ResourceExhausted past the memory budget; either changes nothing.
  absl::Status AttachPooledDescriptor(int block, int index,
                                      const nn::ParameterSet& descriptor) override;
  // SEMA: every adapter, as (block, index in the block's mixture, values).
  struct ExpertRef {
    int block = 0;
    int index = 0;
    nn::ParameterSet* values = nullptr;
  };
  std::vector<ExpertRef> Experts();
  // SEMA: adapter `index` of `block`, or null if there is none.
  nn::ParameterSet* Expert(int block, int index) override;
  // SEMA: the (block, index) of the adapter whose values are `set`, or {-1, -1}.
  std::pair<int, int> SlotOf(const nn::ParameterSet* set) override;
  // SEMA: see SemaState. Restore checks everything before changing anything: InvalidArgument
  // (naming what does not fit) for another method, other blocks, a wrong layout or non-finite
  // values, and for a learner that has learned or imported since it was created.
  absl::StatusOr<SemaState> ExportSemaState() const;
  absl::Status RestoreSemaState(const SemaState& state);
  // See LearnerProgress. Restore replaces the learner's progress at any time (a restart, or a
  // predicting copy catching up); it checks everything first and changes nothing on
  // InvalidArgument (naming what does not fit: flag counts, an offline module for a method
  // without one or of another size, sums of another shape, non-finite values, negative counts).
  LearnerProgress ExportProgress() const;
  absl::Status RestoreProgress(const LearnerProgress& progress);

  // Hooks of one inference forward, for detectors: logits (the method's own: LAE's are the
  // log of the ensemble), head features, the CLS token after each block and the token mean of
  // the last block's input (what RD reads). ViT only for the last two.
  struct Inspection {
    nn::Matrix logits, features, token_mean_last;
    std::vector<nn::Matrix> cls_after_block;
    // A view of the hooks a detector reads (ood::DetectorInfo::needs); the others stay null.
    ood::OodBatch Batch(const ood::FeatureNeeds& needs) const;
  };
  absl::StatusOr<Inspection> Inspect(nn::ConstMatrixRef images);

  // LAE: predict with the ensemble (default) or one expert alone (for comparisons).
  enum class LaeInference { kEnsemble, kOnline, kOffline };
  void set_lae_inference(LaeInference inference) { lae_inference_ = inference; }

  ClMethod method() const { return options_.method; }
  const LearnerOptions& options() const { return options_; }
  void set_task_at_growth(bool on) { options_.task_at_growth = on; }
  nn::Model& model() { return *model_; }
  // Adapters per expandable block (SEMA), and growth refusals so far.
  std::vector<int> AdaptersPerBlock() const;
  const GrowthBudget& budget() const { return budget_; }
  // Bytes of the device's modules (adapters, descriptors, head, offline copy).
  int64_t ModuleBytes() const;

 private:
  // SEMA state of one expandable block: its mixture and, per adapter, a descriptor and its
  // frozen loss records.
  struct Block {
    Block(int vit_block, int dim, int bottleneck) : index(vit_block), mixture(dim, bottleneck) {}
    int index;
    AdapterMixture mixture;
    // Descriptors of the adapters this device grew, and of pooled adapters that came with their
    // founder's (detection uses every one; a pooled adapter without one is ignored by it).
    std::vector<RepresentationDescriptor> descriptors;
    std::vector<LossRecords> records;
    std::vector<int> descriptor_expert;  // per descriptor, the index of its adapter
    // The position in `descriptors` of adapter `expert`'s descriptor, or -1.
    int DescriptorOf(int expert) const {
      for (size_t k = 0; k < descriptor_expert.size(); ++k)
        if (descriptor_expert[k] == expert) return static_cast<int>(k);
      return -1;
    }
    void AddDescriptor(RepresentationDescriptor rd, LossRecords loss_records, int expert) {
      descriptors.push_back(std::move(rd));
      records.push_back(std::move(loss_records));
      descriptor_expert.push_back(expert);
    }
    int consecutive = 0;  // detection batches in a row with every adapter above τ
    bool growing = false;
    int growing_index = -1;          // the adapter being trained while growing
    std::vector<nn::Matrix> window;  // token means of the last confirm_batches detection batches
    // Per adapter this device trained: the mean and variance of the token means it trained on
    // (empty vectors for pooled adapters).
    std::vector<Eigen::RowVectorXf> anchor_mean, anchor_var;
    std::vector<Eigen::RowVectorXf> buffer;  // token means seen while the newest adapter trained
  };
  Learner(std::unique_ptr<nn::Model> model, const LearnerOptions& options);
  absl::Status Init();
  nn::Matrix MaskedLogits(const nn::Matrix& logits) const;
  float StepOn(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
               const std::vector<nn::ParameterSet*>& sets);
  // sema_replay: adds the router-replay gradient of every growing block to its new row.
  void AddRouterReplayGradients();
  std::vector<nn::ParameterSet*> TrainableSets();
  absl::StatusOr<LearnStats> LearnSema(nn::ConstMatrixRef images, absl::Span<const int32_t> labels);
  absl::Status Grow(int block, bool propose);
  absl::StatusOr<Block*> FindBlock(int block);  // InvalidArgument if not expandable
  void FreezeLearnedHeadRows();
  // LAE: an offline module that starts as a copy of the online one.
  absl::StatusOr<EmaAccumulator> NewOffline() const;
  absl::Status RebuildPrototypes();  // SimpleCIL: prototypes from class_sums_ and class_counts_
  absl::Status FinishGrowth();
  // Logits of one chunk under the method (LAE ensemble: log of the element-wise max of the two
  // softmaxes; SimpleCIL: scaled cosine similarities). Writes the hooks of the chunk's main
  // forward (LAE: the online one; FedIns: the query forward) into rows [start, ...) of `hooks`.
  absl::StatusOr<nn::Matrix> ChunkLogits(nn::ConstMatrixRef images, Inspection* hooks,
                                         int64_t start);
  void CopyHooks(Inspection* hooks, int64_t start, int64_t rows);
  // FedIns.
  absl::Status InitFedIns();
  nn::Matrix FedInsQueries(nn::ConstMatrixRef images);
  absl::StatusOr<float> LearnFedIns(nn::ConstMatrixRef images, absl::Span<const int32_t> labels);
  absl::StatusOr<nn::Matrix> FedInsLogits(nn::ConstMatrixRef images, Inspection* hooks,
                                          int64_t start);
  // Sets the working SSF and head to the mean of the pool rows in `rows`.
  void LoadMeanOfPool(const std::vector<int>& rows);

  LearnerOptions options_;
  std::unique_ptr<nn::Model> model_;
  base::Rng rng_;
  nn::Sgd sgd_;
  std::vector<bool> task_classes_;     // empty = all
  std::vector<bool> task_labels_;      // classes seen in the current task's labels
  std::vector<bool> learned_classes_;  // classes taught by earlier tasks
  int task_ = -1;
  int64_t task_steps_ = 0;
  // Adapters for sequential_adapter and lae.
  std::unique_ptr<peft::PetModule> adapter_;
  std::optional<EmaAccumulator> offline_;
  std::optional<PrototypeClassifier> prototypes_;
  nn::Matrix class_sums_;  // SimpleCIL: per-class feature sums and counts
  std::vector<int64_t> class_counts_;
  LaeInference lae_inference_ = LaeInference::kEnsemble;
  std::unique_ptr<LabelFreeAdapter> label_free_;
  // SEMA.
  std::vector<std::unique_ptr<Block>> blocks_;
  int growing_ = -1;  // index into blocks_ of the block training a new adapter, or -1
  int growth_steps_left_ = 0;
  std::vector<ModuleProposal> proposals_;
  GrowthBudget budget_;
  // FedIns: the working SSF (attached) and head hold the mean of the selected pool rows.
  std::unique_ptr<peft::PetModule> ssf_;
  std::vector<nn::ParameterSet> ssf_pool_, head_pool_;
  nn::ParameterSet keys_{"keys"};  // "keys" [P, d]
  nn::Sgd fedins_sgd_{{.learning_rate = 0.01f}};
  // OOD.
  std::unique_ptr<ood::OodDetector> detector_;
  ood::FeatureNeeds detector_needs_;  // what detector_ reads
  // PredictInto's buffers, kept between calls.
  nn::Matrix predict_probabilities_;
  std::vector<float> predict_scores_;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_LEARNER_H_
