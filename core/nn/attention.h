// Scaled dot-product self-attention over several heads (the part between the qkv and output
// projections of a transformer block).
//
// Input qkv is [batch·tokens, 3·dim] with columns q | k | v, each split into `heads` contiguous
// slices of dim/heads (the layout of timm's fused qkv projection). Output is [batch·tokens, dim]
// with the heads concatenated. Forward keeps the attention probabilities for Backward.
#ifndef FEDCL_CORE_NN_ATTENTION_H_
#define FEDCL_CORE_NN_ATTENTION_H_

#include "core/nn/tensor.h"

namespace fedcl::nn {

class MultiHeadAttention {
 public:
  MultiHeadAttention(int dim, int heads);

  void Forward(ConstMatrixRef qkv, int batch, int tokens, Matrix& out);
  // dqkv is resized to qkv's shape and overwritten.
  void Backward(ConstMatrixRef qkv, ConstMatrixRef dout, int batch, int tokens, Matrix& dqkv);

  int dim() const { return dim_; }
  int heads() const { return heads_; }

 private:
  int dim_;
  int heads_;
  int head_dim_;
  float scale_;
  // Attention probabilities, one [tokens, tokens] block per (sample, head), stacked by rows.
  Matrix probs_;
  Matrix dprobs_;  // workspace, [tokens, tokens]
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_ATTENTION_H_
