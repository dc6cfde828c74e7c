#include "core/cl/learner.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/ood/detector_registry.h"

namespace fedcl::cl {

std::vector<std::string> RegisteredMethodNames() { return Methods().Names(); }

absl::Status LearnerOptions::Validate() const {
  if (!(learning_rate > 0) || !std::isfinite(learning_rate))
    return absl::InvalidArgumentError("learning_rate must be a positive number");
  if (!(momentum >= 0 && momentum < 1))
    return absl::InvalidArgumentError("momentum must be in [0, 1)");
  if (!(weight_decay >= 0) || !std::isfinite(weight_decay))
    return absl::InvalidArgumentError("weight_decay must be >= 0");
  if (module_memory_budget_bytes < 0)
    return absl::InvalidArgumentError("module_memory_budget_bytes must be >= 0");
  FEDCL_ASSIGN_OR_RETURN(const ood::DetectorInfo* detector, ood::FindDetector(ood_detector));
  // The detector parses its own options: build one to check them (cheap: nothing is fitted).
  FEDCL_RETURN_IF_ERROR(detector->create({.seed = seed, .options = ood_options}).status());
  return absl::OkStatus();
}

Learner::Learner(std::unique_ptr<nn::Model> model, const LearnerOptions& options,
                 std::unique_ptr<Method> method)
    : options_(options),
      core_(std::move(model),
            CoreOptions{.learning_rate = options.learning_rate,
                        .momentum = options.momentum,
                        .weight_decay = options.weight_decay,
                        .module_memory_budget_bytes = options.module_memory_budget_bytes,
                        .task_at_shift = options.task_at_shift,
                        .seed = options.seed}),
      method_(std::move(method)) {}

Learner::~Learner() = default;

absl::StatusOr<std::unique_ptr<Learner>> Learner::Create(std::unique_ptr<nn::Model> model,
                                                         const LearnerOptions& options) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  if (model == nullptr) return absl::InvalidArgumentError("a learner needs a model");
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<Method> method,
                         CreateMethod({.name = options.method, .options = options.method_options}));
  std::unique_ptr<Learner> learner(new Learner(std::move(model), options, std::move(method)));
  learner->core_.model().SetBackboneTrainable(false);
  FEDCL_RETURN_IF_ERROR(learner->method_->Init(learner->core_));
  return learner;
}

absl::Status Learner::SetTaskClasses(const std::vector<int>& classes) {
  return core_.SetTaskClasses(classes);
}

absl::Status Learner::BeginTask(std::vector<int> classes) {
  FEDCL_RETURN_IF_ERROR(core_.StartTask(classes));
  return method_->OnBeginTask(core_);
}

absl::StatusOr<LearnStats> Learner::Learn(nn::ConstMatrixRef images,
                                          absl::Span<const int32_t> labels) {
  const int num_classes = core_.num_classes();
  if (images.rows() != static_cast<int64_t>(labels.size()) || images.rows() == 0)
    return absl::InvalidArgumentError(absl::StrCat("a labelled batch needs as many labels (",
                                                   labels.size(), ") as images (", images.rows(),
                                                   "), and at least one"));
  const std::vector<bool>& task_classes = core_.task_classes();
  for (int32_t y : labels) {
    if (y < 0 || y >= num_classes)
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is outside [0, ", num_classes, ")"));
    if (!task_classes.empty() && !task_classes[y])
      return absl::InvalidArgumentError(
          absl::StrCat("label ", y, " is not a class of the current task"));
  }
  core_.SeeLabels(labels);
  return method_->Learn(core_, images, labels);
}

LearnerProgress Learner::ExportProgress() const {
  LearnerProgress p;
  p.task = core_.task();
  p.task_steps = core_.task_steps();
  p.learned_classes = core_.learned_classes();
  p.task_labels = core_.task_labels();
  p.method = method_->ExportState(core_);
  return p;
}

absl::Status Learner::RestoreProgress(const LearnerProgress& p) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("learner progress: ", what));
  };
  const size_t classes = static_cast<size_t>(core_.num_classes());
  if (p.task < -1 || p.task_steps < 0) return bad("negative task counters");
  for (const std::vector<bool>* flags : {&p.learned_classes, &p.task_labels}) {
    if (!flags->empty() && flags->size() != classes)
      return bad(absl::StrCat(flags->size(), " class flags for ", classes, " classes"));
  }
  // The method checks its state whole before changing anything; then the task bookkeeping.
  FEDCL_RETURN_IF_ERROR(method_->RestoreState(core_, p.method));
  core_.SetTaskState(p.task, p.task_steps, p.learned_classes, p.task_labels);
  return absl::OkStatus();
}

Learner::Mark Learner::MarkState() {
  Mark mark{.progress = ExportProgress(),
            .task_classes = TaskClasses(),
            .sgd = core_.sgd(),
            .rng = core_.rng(),
            .shared = {}};
  for (const nn::ParameterSet* set : SharedModules()) mark.shared.push_back(set);
  return mark;
}

absl::Status Learner::RollBack(const Mark& mark) {
  FEDCL_RETURN_IF_ERROR(RestoreProgress(mark.progress));
  FEDCL_RETURN_IF_ERROR(core_.SetTaskClasses(mark.task_classes));
  core_.rng() = mark.rng;
  // Momentum is keyed by parameter set: it carries over only while the sets are the marked ones.
  // A restore that rebuilt them (SEMA's mixtures) leaves keys of sets that are gone, which a new
  // set could alias: then it starts afresh.
  std::vector<const nn::ParameterSet*> shared;
  for (const nn::ParameterSet* set : SharedModules()) shared.push_back(set);
  if (shared == mark.shared) {
    core_.sgd() = mark.sgd;
  } else {
    core_.sgd().Reset();
  }
  return absl::OkStatus();
}

int64_t Learner::ModuleBytes() const {
  const int64_t values = core_.model().head().parameters().num_values() + method_->ModuleValues();
  return values * static_cast<int64_t>(sizeof(float));
}

}  // namespace fedcl::cl
