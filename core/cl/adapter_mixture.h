// SEMA's mixture of adapters at one expandable block (algorithms.md §4.2), as a layer on a
// block's tokens x ([batch·tokens, dim]):
//   z_b  = mean over sample b's tokens of x                (the router's and descriptors' input)
//   w_b  = softmax(R z_b + c)                               (ExpandableRouter, M experts)
//   a(x) = Σ_i w_{b,i} · A_i(x),   A_i(x) = W_up,i ReLU(W_down,i x + b_down,i) + b_up,i
// added to the block's output in parallel with its MLP. A new expert starts as a zero function
// (W_up = 0, biases 0, W_down Kaiming-uniform), so growing never changes what the block computes.
// Backward gives every expert's and the router's gradients and the gradient at x, through both
// the experts and the router's token mean.
#ifndef FEDCL_CORE_CL_ADAPTER_MIXTURE_H_
#define FEDCL_CORE_CL_ADAPTER_MIXTURE_H_

#include <vector>

#include "core/base/random.h"
#include "core/cl/sema.h"
#include "core/nn/tensor.h"

namespace fedcl::cl {

struct Adapter {
  nn::Matrix down;         // bottleneck × dim
  Eigen::VectorXf down_b;  // bottleneck
  nn::Matrix up;           // dim × bottleneck
  Eigen::VectorXf up_b;    // dim
};

struct AdapterGradients {
  std::vector<Adapter> experts;  // same shapes as the experts
  nn::Matrix router;             // M × dim
  Eigen::VectorXf router_b;      // M
};

class AdapterMixture {
 public:
  AdapterMixture(int dim, int bottleneck, base::Rng& rng);  // one expert, router of one row
  // Adds a zero-function expert and its router row; returns its index.
  int AddExpert(base::Rng& rng);

  // a(x) for `batch` samples of `tokens` tokens each. Keeps what Backward needs.
  const nn::Matrix& Forward(const nn::Matrix& x, int batch, int tokens);
  // Gradients of Σ da ⊙ a with respect to every parameter, and dx (same shape as x).
  void Backward(const nn::Matrix& da, AdapterGradients* gradients, nn::Matrix* dx) const;

  int experts() const { return static_cast<int>(experts_.size()); }
  Adapter& expert(int i) { return experts_[i]; }
  ExpandableRouter& router() { return router_; }
  const nn::Matrix& weights() const { return weights_; }  // batch × M, of the last Forward

 private:
  int dim_, bottleneck_;
  std::vector<Adapter> experts_;
  ExpandableRouter router_;
  // Forward state.
  int batch_ = 0, tokens_ = 0;
  nn::Matrix x_, z_, weights_, output_;
  std::vector<nn::Matrix> hidden_;      // per expert, ReLU(W_down x + b), [rows, bottleneck]
  std::vector<nn::Matrix> expert_out_;  // per expert, A_i(x), [rows, dim]
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_ADAPTER_MIXTURE_H_
