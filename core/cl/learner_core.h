// What every continual method (method.h) can reach of the learner it runs in: the model, the
// random stream, the learner's SGD, the task bookkeeping (the current task's classes and the
// classes earlier tasks taught), and the one training step and hook copying they all use.
//
// Not thread-safe: one learner is one device's replica.
#ifndef FEDCL_CORE_CL_LEARNER_CORE_H_
#define FEDCL_CORE_CL_LEARNER_CORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/base/random.h"
#include "core/cl/method.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"

namespace fedcl::cl {

// The knobs every method shares; a method's own are its options text.
struct CoreOptions {
  // Local SGD (SEMA's recipe: momentum 0.9, weight decay 5e-4), one step per Learn batch.
  float learning_rate = 0.01f;
  float momentum = 0.9f;
  float weight_decay = 5e-4f;
  // Bound on the bytes of the device's modules (ModuleBytes) that methods which grow stay
  // under (0 = none).
  int64_t module_memory_budget_bytes = 0;
  // For hosts that have no task boundaries (the SDK): a method that detects a shift may start a
  // task there (SEMA: each growth is a BeginTask with every class).
  bool task_at_shift = false;
  uint64_t seed = 1;
};

class LearnerCore {
 public:
  LearnerCore(std::unique_ptr<nn::Model> model, const CoreOptions& options);

  nn::Model& model() { return *model_; }
  const nn::Model& model() const { return *model_; }
  base::Rng& rng() { return rng_; }
  const CoreOptions& options() const { return options_; }
  CoreOptions& mutable_options() { return options_; }
  nn::Sgd& sgd() { return sgd_; }
  int num_classes() const { return model_->config().num_classes; }

  // ---- Tasks ----
  // BeginTask calls so far, minus one; Learn steps since the last.
  int task() const { return task_; }
  int64_t task_steps() const { return task_steps_; }
  void CountStep() { ++task_steps_; }
  // Starts a task with these classes (empty = every class): the classes the finished task's
  // labels taught become old. InvalidArgument for a class outside the model's.
  absl::Status StartTask(const std::vector<int>& classes);
  absl::Status SetTaskClasses(const std::vector<int>& classes);
  std::vector<int> TaskClasses() const;
  const std::vector<bool>& task_classes() const { return task_classes_; }
  const std::vector<bool>& learned_classes() const { return learned_classes_; }
  const std::vector<bool>& task_labels() const { return task_labels_; }
  // Counts a batch's labels as seen in the current task.
  void SeeLabels(absl::Span<const int32_t> labels);
  // Restores the task bookkeeping (checked by the caller).
  void SetTaskState(int task, int64_t steps, std::vector<bool> learned, std::vector<bool> seen);

  // ---- Training and inference ----
  // Logits with the classes outside the current task masked to a large negative number.
  nn::Matrix MaskedLogits(const nn::Matrix& logits) const;
  // One SGD step of `sets` on the masked cross-entropy of the batch; `after_backward` (optional)
  // may change the gradients before the step. Counts the step. Returns the loss.
  float StepOn(nn::ConstMatrixRef images, absl::Span<const int32_t> labels,
               const std::vector<nn::ParameterSet*>& sets,
               const std::function<void()>& after_backward = nullptr);
  // Copies the hooks of the last inference forward into rows [start, start + rows) of `hooks`.
  void CopyHooks(Inspection* hooks, int64_t start, int64_t rows);
  // Zeroes the head's gradient rows of the classes earlier tasks taught (SEMA's §4.4 mask).
  void FreezeLearnedHeadRows();

 private:
  CoreOptions options_;
  std::unique_ptr<nn::Model> model_;
  base::Rng rng_;
  nn::Sgd sgd_;
  std::vector<bool> task_classes_;     // empty = all
  std::vector<bool> task_labels_;      // classes seen in the current task's labels
  std::vector<bool> learned_classes_;  // classes taught by earlier tasks
  int task_ = -1;
  int64_t task_steps_ = 0;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_LEARNER_CORE_H_
