// SEMA's mixture of adapters at one expandable block (algorithms.md §4.2), plugged into the
// block's adapter branch (nn::BranchExtension):
//   z_b  = mean over sample b's tokens of the block input      (the router's input)
//   w_b  = softmax over experts i of (r_i · z_b + c_i)          (one router row per expert)
//   a(x) = Σ_i w_{b,i} · A_i(x),   A_i(x) = W_up,i ReLU(W_down,i x + b_down,i) + b_up,i
// added to the block's output in parallel with its MLP, x being the block's rows after the
// attention residual. The router reads the block input, not x, because the last block of a
// classifier computes x for its CLS rows only; the server's statistics are of the same z.
//
// Each expert is one ParameterSet, the unit the server pools and aggregates (fl::ExpertLayout
// has the same layout): "down.weight" [r, d], "down.bias" [r], "up.weight" [d, r],
// "up.bias" [d], "router.weight" [1, d], "router.bias" [1]. A new expert starts as a zero function
// (W_up = 0, biases 0, W_down and its router row Kaiming-uniform), so growing changes what the
// block computes only through the re-normalised mixing weights. Freezing an expert is marking its
// tensors frozen; Backward then gives gradients to the trainable experts only.
#ifndef FEDCL_CORE_CL_ADAPTER_MIXTURE_H_
#define FEDCL_CORE_CL_ADAPTER_MIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/random.h"
#include "core/nn/adapter_branch.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::cl {

// Tensor indices of the expert layout above.
enum ExpertTensor : int {
  kExpertDownWeight = 0,
  kExpertDownBias,
  kExpertUpWeight,
  kExpertUpBias,
  kExpertRouterWeight,
  kExpertRouterBias,
};

// A zero-function expert with the layout above, all tensors trainable.
nn::ParameterSet NewExpert(const std::string& name, int dim, int bottleneck, base::Rng& rng);

class AdapterMixture final : public nn::BranchExtension {
 public:
  AdapterMixture(int dim, int bottleneck) : dim_(dim), bottleneck_(bottleneck) {}

  // Adds an expert (a new one from NewExpert, or one received from the server) and returns its
  // index. InvalidArgument, adding nothing, if its layout is not the expert layout of this
  // mixture's width and bottleneck.
  absl::StatusOr<int> AddExpert(nn::ParameterSet expert);
  // Removes the most recent expert (a refused or abandoned growth).
  void RemoveLastExpert() { experts_.pop_back(); }

  int experts() const { return static_cast<int>(experts_.size()); }
  nn::ParameterSet& expert(int i) { return *experts_[i]; }
  const nn::ParameterSet& expert(int i) const { return *experts_[i]; }
  int dim() const { return dim_; }
  int bottleneck() const { return bottleneck_; }
  // Bytes of one expert's values.
  int64_t expert_bytes() const;

  // Of the last forward: the mixing weights (batch × M, rows summing to one) and the router input
  // z (batch × d).
  const nn::Matrix& weights() const { return weights_; }
  const nn::Matrix& router_input() const { return z_; }

  void ForwardAdd(nn::ConstMatrixRef x, nn::ConstMatrixRef block_input, int batch, int tokens,
                  nn::MatrixRef out) override;
  void Backward(nn::ConstMatrixRef dout, nn::Matrix* dx) override;
  void AddBlockInputGradient(nn::MatrixRef dblock_input) const override;
  bool HasTrainable() const override;

 private:
  int dim_, bottleneck_;
  // Pointers so that ParamRef-free views stay valid while experts are added.
  std::vector<std::unique_ptr<nn::ParameterSet>> experts_;
  // Forward state.
  int batch_ = 0, tokens_ = 0, rows_per_sample_ = 0;
  nn::Matrix x_, z_, weights_;
  std::vector<nn::Matrix> hidden_;      // per expert, ReLU(W_down x + b), [rows, r]
  std::vector<nn::Matrix> expert_out_;  // per expert, A_i(x), [rows, d]
  nn::Matrix dz_;                       // gradient at z from the last Backward
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_ADAPTER_MIXTURE_H_
