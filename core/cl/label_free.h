// Label-free adaptation on the device (Tent/EATA-style, with CEMA's sample filters):
// minimise the prediction entropy of the selected unlabelled samples, updating only the
// LayerNorm affine parameters and any SSF scale/shift attached to the model.
//
//   cl::LabelFreeAdapter adapter(model, {.learning_rate = 1e-3f});
//   FEDCL_ASSIGN_OR_RETURN(cl::AdaptStep step, adapter.Adapt(unlabelled_batch));
//   // step.used samples of the batch passed the filters; the entropy is their mean
//
// The gradient of the mean entropy over the kept rows: for p = softmax(f) and
// H = −Σ_c p_c log p_c, ∂H/∂f_j = −p_j (log p_j + H). Rows the filters drop get no gradient.
// Construction marks exactly the LayerNorm ("...norm...weight/bias") and SSF tensors trainable
// and everything else frozen; it does not restore the previous flags.
#ifndef FEDCL_CORE_CL_LABEL_FREE_H_
#define FEDCL_CORE_CL_LABEL_FREE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/cl/sample_filter.h"
#include "core/nn/model.h"
#include "core/nn/optimizer.h"

namespace fedcl::cl {

struct LabelFreeOptions {
  float learning_rate = 1e-3f;
  float momentum = 0.9f;
  SampleFilterOptions filter;  // E_max = 0.4·ln C, d = 0.05 by default
};

struct AdaptStep {
  int64_t used = 0;  // samples that passed the filters and were learned from
  int64_t seen = 0;
  double entropy = 0.0;  // mean entropy of the used samples before the step
};

class LabelFreeAdapter {
 public:
  LabelFreeAdapter(nn::Model& model, const LabelFreeOptions& options = {});
  // One step on a batch (N × input); no step when no sample passes the filters.
  absl::StatusOr<AdaptStep> Adapt(nn::ConstMatrixRef images);
  // Marks the LayerNorm and SSF tensors trainable and everything else frozen again (a host that
  // trains other tensors between adaptations calls this first).
  void MarkTrainable();
  // Number of values the adaptation may change.
  int64_t trainable_values() const { return trainable_values_; }
  const SampleFilter& filter() const { return filter_; }

 private:
  nn::Model& model_;
  SampleFilter filter_;
  std::unique_ptr<nn::Optimizer> optimizer_;
  int64_t trainable_values_ = 0;
  nn::Matrix probabilities_, dlogits_;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_LABEL_FREE_H_
