// Scaled dot-product self-attention over several heads (the part between the qkv and output
// projections of a transformer block).
//
// Input qkv is [batch·tokens, 3·dim] with columns q | k | v, each split into `heads` contiguous
// slices of dim/heads (the layout of timm's fused qkv projection). Output is [batch·tokens, dim]
// with the heads concatenated, or, with `cls_only`, [batch, dim]: only the first token of each
// sample attends (all tokens still serve as keys and values), which is all a classifier reading
// the CLS token needs from the last block. Forward keeps the attention probabilities for
// Backward.
#ifndef FEDCL_CORE_NN_ATTENTION_H_
#define FEDCL_CORE_NN_ATTENTION_H_

#include <vector>

#include "core/nn/tensor.h"

namespace fedcl::nn {

class MultiHeadAttention {
 public:
  MultiHeadAttention(int dim, int heads);

  void Forward(ConstMatrixRef qkv, int batch, int tokens, bool cls_only, Matrix& out);
  // dout has Forward's output shape; dqkv is resized to qkv's shape and overwritten. Uses the
  // cls_only setting of the last Forward.
  void Backward(ConstMatrixRef qkv, ConstMatrixRef dout, int batch, int tokens, Matrix& dqkv);

  int dim() const { return dim_; }
  int heads() const { return heads_; }

 private:
  int dim_;
  int heads_;
  int head_dim_;
  float scale_;
  int queries_ = 0;  // query tokens per sample in the last Forward: 1 (cls_only) or all
  // Attention probabilities, one [tokens, tokens] block per (sample, head), stacked by rows.
  Matrix probs_;
  AlignedFloats workspace_;  // dense per-(sample, head) copies of q, k, v and gradients
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_ATTENTION_H_
