// lae: LAE (algorithms.md §5). An online bottleneck adapter on the first blocks trains with the
// head; an offline copy, started at the second task, follows it as an exponential moving average
// that moves `fraction_per_task` of the way over a task of `steps_per_task` steps
// (α = (1 − fraction)^(1/steps)); inference is the max-of-softmax ensemble of the two. After
// each task starts, the head trains alone for `warmup_steps` (adaptation-speed calibration,
// §5.3). Its private state is the offline module once started.
//
// Options: adapter_bottleneck (8), blocks ([0, 1]), fraction_per_task (0.1), steps_per_task
// (300), warmup_steps (30), untasked_task_steps (0: for hosts without task boundaries, the
// offline module starts after this many steps, as it would at the second task; 0 = only at the
// second task). Run-time option: inference = ensemble | online | offline (for comparisons).
#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/accumulation.h"
#include "core/cl/methods/method_util.h"
#include "core/nn/loss.h"

namespace fedcl::cl {
namespace {

// Swaps the values of two sets of the same layout.
void SwapValues(nn::ParameterSet& a, nn::ParameterSet& b) { a.flat_values().swap(b.flat_values()); }

enum class Inference { kEnsemble, kOnline, kOffline };

class LaeMethod final : public HeadAndAdapterMethod {
 public:
  LaeMethod() : HeadAndAdapterMethod({0, 1}, 8) {}
  static absl::StatusOr<std::unique_ptr<Method>> Create(const MethodConfig& config);
  absl::string_view name() const override { return "lae"; }
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override;
  absl::Status OnBeginTask(LearnerCore& core) override {
    if (core.task() == 1 && !offline_.has_value()) {
      FEDCL_ASSIGN_OR_RETURN(offline_, NewOffline());
    }
    return absl::OkStatus();
  }
  absl::StatusOr<nn::Matrix> ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                         Inspection* hooks, int64_t start) override;
  bool single_forward() const override { return false; }
  bool logits_are_log_probabilities() const override {
    return offline_.has_value() && inference_ == Inference::kEnsemble;
  }
  bool prediction_reads_state() const override { return true; }
  MethodState ExportState(const LearnerCore& core) const override {
    MethodState state;
    if (!offline_.has_value()) return state;
    const Eigen::VectorXf& v = offline_->offline().flat_values();
    state.floats["offline"].assign(v.data(), v.data() + v.size());
    return state;
  }
  absl::Status RestoreState(LearnerCore& core, const MethodState& state) override;
  absl::Status SetOption(absl::string_view key, absl::string_view value) override;
  int64_t ModuleValues() const override {
    return adapter_->parameters().num_values() +
           (offline_.has_value() ? offline_->offline().num_values() : 0);
  }

 private:
  // An offline module that starts as a copy of the online one.
  absl::StatusOr<EmaAccumulator> NewOffline() const {
    FEDCL_ASSIGN_OR_RETURN(double decay, DecayForFraction(fraction_per_task_, steps_per_task_));
    EmaAccumulator offline(decay);
    offline.Start(adapter_->parameters());
    return offline;
  }

  double fraction_per_task_ = 0.1;
  int64_t steps_per_task_ = 300;
  int warmup_steps_ = 30;
  int64_t untasked_task_steps_ = 0;
  Inference inference_ = Inference::kEnsemble;
  std::optional<EmaAccumulator> offline_;
};

absl::StatusOr<std::unique_ptr<Method>> LaeMethod::Create(const MethodConfig& config) {
  auto m = std::make_unique<LaeMethod>();
  FEDCL_ASSIGN_OR_RETURN(base::OptionText options,
                         base::OptionText::Parse(config.options, "method lae"));
  FEDCL_RETURN_IF_ERROR(options.Read("adapter_bottleneck", &m->bottleneck_));
  FEDCL_RETURN_IF_ERROR(options.ReadList("blocks", &m->blocks_));
  FEDCL_RETURN_IF_ERROR(options.Read("fraction_per_task", &m->fraction_per_task_));
  FEDCL_RETURN_IF_ERROR(options.Read("steps_per_task", &m->steps_per_task_));
  FEDCL_RETURN_IF_ERROR(options.Read("warmup_steps", &m->warmup_steps_));
  FEDCL_RETURN_IF_ERROR(options.Read("untasked_task_steps", &m->untasked_task_steps_));
  FEDCL_RETURN_IF_ERROR(options.CheckAllRead());
  if (m->bottleneck_ < 1)
    return absl::InvalidArgumentError("method lae: adapter_bottleneck must be >= 1");
  if (!(m->fraction_per_task_ > 0 && m->fraction_per_task_ < 1) || m->steps_per_task_ < 1) {
    return absl::InvalidArgumentError(
        "method lae: fraction_per_task must be in (0, 1) and steps_per_task >= 1");
  }
  if (m->warmup_steps_ < 0 || m->untasked_task_steps_ < 0) {
    return absl::InvalidArgumentError(
        "method lae: warmup_steps and untasked_task_steps must be >= 0");
  }
  return m;
}

absl::StatusOr<LearnStats> LaeMethod::Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                            absl::Span<const int32_t> labels) {
  // Head-only warm-up at the start of every task after the first (adaptation-speed
  // calibration, §5.3), then head and online adapter; the offline copy follows every step.
  LearnStats stats;
  nn::ParameterSet* head = &core.model().head().parameters();
  const bool warmup = core.task() >= 1 && core.task_steps() < warmup_steps_;
  stats.loss = warmup ? core.StepOn(images, labels, {head})
                      : core.StepOn(images, labels, {head, &adapter_->parameters()});
  if (offline_.has_value()) FEDCL_RETURN_IF_ERROR(offline_->Update(adapter_->parameters()));
  // A host without task boundaries: the first "task" ends after untasked_task_steps.
  if (!offline_.has_value() && core.task() < 0 && untasked_task_steps_ > 0 &&
      core.task_steps() >= untasked_task_steps_) {
    FEDCL_ASSIGN_OR_RETURN(offline_, NewOffline());
  }
  return stats;
}

absl::StatusOr<nn::Matrix> LaeMethod::ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                                  Inspection* hooks, int64_t start) {
  nn::Model& model = core.model();
  const int64_t rows = images.rows();
  if (offline_.has_value() && inference_ == Inference::kOffline) {
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    nn::Matrix logits = model.Forward(images, false);
    core.CopyHooks(hooks, start, rows);
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    return logits;
  }
  if (offline_.has_value() && inference_ == Inference::kEnsemble) {
    // Offline expert first, so that the hooks the caller reads are the online forward's.
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    const nn::Matrix offline_logits = model.Forward(images, false);
    SwapValues(adapter_->parameters(), offline_->mutable_offline());
    const nn::Matrix online_logits = model.Forward(images, false);
    core.CopyHooks(hooks, start, rows);
    nn::Matrix p_on, p_off;
    nn::Softmax(online_logits, p_on);
    nn::Softmax(offline_logits, p_off);
    // log of the element-wise max: its argmax and softmax-free scores are the ensemble's.
    return nn::Matrix(p_on.cwiseMax(p_off).array().max(1e-30f).log().matrix());
  }
  nn::Matrix logits = model.Forward(images, false);
  core.CopyHooks(hooks, start, rows);
  return logits;
}

absl::Status LaeMethod::RestoreState(LearnerCore& core, const MethodState& state) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("lae state: ", what));
  };
  if (!state.ints.empty()) return bad("unexpected integer arrays");
  std::optional<EmaAccumulator> offline;
  for (const auto& [key, values] : state.floats) {
    if (key != "offline") return bad(absl::StrCat("unknown array '", key, "'"));
    if (static_cast<int64_t>(values.size()) != adapter_->parameters().num_values()) {
      return bad(absl::StrCat("an offline module of ", values.size(), " values for an adapter of ",
                              adapter_->parameters().num_values()));
    }
    const Eigen::Map<const Eigen::VectorXf> v(values.data(), values.size());
    if (!v.allFinite()) return bad("the offline module has non-finite values");
    FEDCL_ASSIGN_OR_RETURN(offline, NewOffline());
    offline->mutable_offline().flat_values() = v;
  }
  offline_ = std::move(offline);
  return absl::OkStatus();
}

absl::Status LaeMethod::SetOption(absl::string_view key, absl::string_view value) {
  if (key != "inference") return Method::SetOption(key, value);
  if (value == "ensemble") {
    inference_ = Inference::kEnsemble;
  } else if (value == "online") {
    inference_ = Inference::kOnline;
  } else if (value == "offline") {
    inference_ = Inference::kOffline;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("lae: inference must be ensemble, online or offline, not '", value, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterLaeMethod(MethodRegistry& registry) {
  RegisterMethod<LaeMethod>(registry, "lae",
                            "LAE: an online adapter and its offline EMA, max-of-softmax ensemble");
}

}  // namespace fedcl::cl
