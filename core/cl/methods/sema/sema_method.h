// SEMA (algorithms.md §4) as a continual method: mixtures of adapters at the expandable blocks of
// a ViT that grow when every adapter's descriptor finds the stream unusual, and, as
// "sema_replay", with router replay (our extension, below).
//
// On a stream (§4.4 adapted): the first adapter of each expandable block trains for
// `new_module_steps` steps. Then every labelled batch is first a detection batch, and one of two
// triggers decides whether a block grows (at most one growth per detection, unless the growth
// budget refuses):
// - trigger "descriptor" (§4.3, the paper's): at each expandable block, from the first on, every
//   adapter's batch-mean z-score (sema.h) above τ on `confirm_batches` consecutive batches grows
//   that block.
// - trigger "cusum" (our departure, for streams the descriptor cannot tell apart: its per-sample
//   AUROC is near 0.5 on rotation, noise and blur): a CUSUM (core/ood/shift_tests.h) on every
//   sample's `trigger_score` ("energy", −log Σ exp logits; "max_softmax", −max softmax; or
//   "descriptor", the largest over blocks of the sample's z-score under the block's most
//   familiar adapter; or "class_features", the mean squared standardised distance of the
//   sample's head features from its own class's mean, both fitted on the first half of the
//   calibration samples, the CUSUM calibrated on the second half: labelled batches make the
//   class known, and the score does not depend on how well the head fits, as energy does),
//   calibrated to `false_alarms_per_10k` on the first `calibration_samples` detection samples
//   after each training phase (the stream the model now fits), decides when; the block whose
//   adapters find the batch most unusual (SmallestMeanZScore, the deepest on a tie or without
//   descriptors) grows. After an alarm the CUSUM calibrates again on what follows, grown or
//   refused, so a shift is announced once and the shifted stream becomes the new normal. The
//   CUSUM restarts uncalibrated when a device's state is restored (as the detection window
//   does). A growing block trains its new adapter, its
// router row and the head for `new_module_steps` steps with every other adapter frozen (queuing
// a proposal for the server when it grows), then trains the new adapter's descriptor on the
// token means it buffered and freezes both, the descriptor with its loss records. Between
// growths only the head trains, and only for classes no earlier task taught (§4.4's mask of old
// classes; in a domain-incremental stream the head is fixed after the first task). At the growth
// cap or memory budget the block does not grow: the refusal is reported in LearnStats and
// counted, and the existing mixture serves the shifted data.
//
// Router replay (sema_replay): a growing block keeps, for each adapter it trained, the diagonal
// Gaussian of the token means it trained on (the statistics it proposes to the server), and while
// a new router row trains, samples drawn from the older adapters' Gaussians are routed to their
// own adapters (cross-entropy on the mixing weights). SEMA's new row sees only new data, so
// nothing stops it from taking over old inputs; this keeps old inputs on old adapters without
// storing any sample.
//
// Shared with the server: the head, and every adapter ("block<b>/e<i>"; the first of each block
// is the pool's base expert, the grown ones go through the pool, core/device). Private state:
// the mixtures, descriptors with their frozen loss records, replay anchors and the growth in
// progress (sema_state.cc).
//
// Options: adapter_bottleneck (8), expandable_blocks ([2, 3]), descriptor_bottleneck (16, must
// compress the block width), expansion_tau (2), confirm_batches (2), new_module_steps (150),
// router_replay (false; true for sema_replay), router_replay_samples (32), descriptor_epochs (20),
// descriptor_learning_rate (0.01), max_adapters_per_block (4), trigger ("descriptor"),
// trigger_score ("energy"), calibration_samples (512), false_alarms_per_10k (1),
// cusum_allowance (0.5).
#ifndef FEDCL_CORE_CL_METHODS_SEMA_SEMA_METHOD_H_
#define FEDCL_CORE_CL_METHODS_SEMA_SEMA_METHOD_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cl/adapter_mixture.h"
#include "core/cl/growth_budget.h"
#include "core/cl/learner_core.h"
#include "core/cl/method.h"
#include "core/cl/sema.h"
#include "core/ood/shift_tests.h"

namespace fedcl::cl {

struct SemaOptions {
  int adapter_bottleneck = 8;
  std::vector<int> expandable_blocks = {2, 3};
  int descriptor_bottleneck = 16;  // must compress the block width
  double expansion_tau = 2.0;
  int confirm_batches = 2;  // consecutive batches above τ before a block grows
  int new_module_steps = 150;
  bool router_replay = false;
  int router_replay_samples = 32;  // Gaussian samples per old adapter and step
  int descriptor_epochs = 20;
  float descriptor_learning_rate = 0.01f;
  int max_adapters_per_block = 4;
  std::string trigger = "descriptor";  // or "cusum"
  // cusum: "energy", "max_softmax", "descriptor" or "class_features"
  std::string trigger_score = "energy";
  int calibration_samples = 512;      // cusum: clean scores it calibrates on, >= 16
  double false_alarms_per_10k = 1.0;  // cusum: target on the clean stream, in (0, 1000]
  double cusum_allowance = 0.5;       // cusum: k, in clean standard deviations, > 0
  // Parses `text` over these defaults; InvalidArgument naming the bad field.
  static absl::StatusOr<SemaOptions> Parse(const std::string& text, bool router_replay);
};

// SEMA's typed private state (the MethodState arrays decode into it), for a host that persists
// a device. Export it between Learn calls; a learner just created with the same options and
// backbone then continues as the exported one would (SGD momentum and the detection window
// excepted: they restart empty).
struct SemaAdapterState {
  nn::ParameterSet expert;  // values and trainable flags
  // Adapters grown on this device have a descriptor; pooled ones from other devices may not.
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
};
// The MethodState form (what hosts persist), and back for a d-wide block with descriptors of
// bottleneck r; InvalidArgument naming what does not decode.
MethodState SemaStateToMethodState(const SemaState& state);
absl::StatusOr<SemaState> SemaStateFromMethodState(const MethodState& state, int dim,
                                                   int adapter_bottleneck, int bottleneck);

class SemaMethod final : public Method, public ExpansionHooks {
 public:
  explicit SemaMethod(const SemaOptions& options)
      : options_(options), budget_({.max_adapters_per_block = options.max_adapters_per_block}) {}
  ~SemaMethod() override;

  absl::string_view name() const override {
    return options_.router_replay ? "sema_replay" : "sema";
  }
  absl::Status Init(LearnerCore& core) override;
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override;
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override;
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override;
  MethodState ExportState(const LearnerCore& core) const override;
  absl::Status RestoreState(LearnerCore& core, const MethodState& state) override;
  ExpansionHooks* expansion() override { return this; }
  int64_t ModuleValues() const override;

  // ExpansionHooks (sema_pool.cc).
  std::vector<ModuleProposal> TakeProposals() override;
  nn::ParameterSet* Expert(int block, int index) override;
  std::pair<int, int> SlotOf(const nn::ParameterSet* set) override;
  absl::StatusOr<int> AddPooledExpert(int block, const nn::ParameterSet& values,
                                      const nn::ParameterSet* descriptor) override;
  std::optional<nn::ParameterSet> ExpertDescriptor(int block, int index) const override;
  bool ExpertHasDescriptor(int block, int index) const override;
  absl::Status AttachPooledDescriptor(int block, int index,
                                      const nn::ParameterSet& descriptor) override;
  std::vector<int> AdaptersPerBlock() const override;
  int64_t growth_refusals() const override {
    return budget_.refused_at_cap() + budget_.refused_for_memory();
  }

  // Typed state (sema_state.cc), what ExportState/RestoreState encode.
  SemaState ExportSemaState() const;
  absl::Status RestoreSemaState(const SemaState& state);

 private:
  // One expandable block: its mixture and, per adapter, a descriptor and its frozen loss records.
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

  absl::Status Detect(LearnerCore& core, nn::ConstMatrixRef images,
                      absl::Span<const int32_t> labels, LearnStats& stats);
  // The cusum trigger on a detection batch's per-sample scores (higher = less familiar);
  // `unusual[i]`: block i's smallest mean z-score on the batch.
  // Calibrates the CUSUM on the first `calibration_samples` scores after a reset.
  absl::Status DetectByCusum(LearnerCore& core, const std::vector<float>& scores,
                             int calibration_samples, const std::vector<double>& unusual,
                             LearnStats& stats);
  // trigger_score "class_features": fits the reference first, then scores against it.
  absl::Status DetectOnClassFeatures(LearnerCore& core, absl::Span<const int32_t> labels,
                                     const std::vector<double>& unusual, LearnStats& stats);
  void FitClassReference();
  float ClassDistance(const Eigen::Ref<const Eigen::RowVectorXf>& features, int32_t label) const;
  // trigger_score "energy" or "max_softmax" of each row of `logits`.
  std::vector<float> TriggerScores(const nn::Matrix& logits) const;
  // Grows block i on a detection: reports it in `stats` (a budget refusal too).
  absl::Status GrowOnDetection(LearnerCore& core, int i, LearnStats& stats);
  absl::Status Grow(int block, bool propose);
  absl::Status FinishGrowth();
  // sema_replay: adds the router-replay gradient of every growing block to its new row.
  void AddRouterReplayGradients();
  absl::StatusOr<Block*> FindBlock(int block);  // InvalidArgument if not expandable
  int64_t UsedBytes() const;                    // what the growth budget counts

  const SemaOptions options_;
  LearnerCore* core_ = nullptr;  // set by Init; the learner outlives its method
  std::vector<std::unique_ptr<Block>> blocks_;
  int growing_ = -1;  // index into blocks_ of the block training a new adapter, or -1
  int growth_steps_left_ = 0;
  std::vector<ModuleProposal> proposals_;
  GrowthBudget budget_;
  // The cusum trigger: the test once calibrated, and the scores it will be calibrated on.
  std::optional<ood::CusumTest> cusum_;
  std::vector<float> calibration_;
  // trigger_score "class_features": per class, the mean head feature of the reference (the
  // first half of the calibration samples), which classes it saw, and 1/σ of the features'
  // pooled within-class spread; and the samples buffered to fit it.
  struct ClassReference {
    nn::Matrix mean;
    std::vector<bool> seen;
    Eigen::RowVectorXf inv_std;
  };
  std::optional<ClassReference> class_reference_;
  nn::Matrix reference_features_;
  std::vector<int32_t> reference_labels_;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_METHODS_SEMA_SEMA_METHOD_H_
