// One pre-LN transformer block with its PET extension points:
//
//   h   = ssf(LN1(x))                      SSF sites: blocks.<i>.norm1
//   x1  = x + ssf(proj(MHSA(ssf(qkv(h)))))             blocks.<i>.attn.qkv, blocks.<i>.attn.proj
//   h2  = ssf(LN2(x1))                                 blocks.<i>.norm2
//   out = x1 + ssf(fc2(GELU(ssf(fc1(h2))))) + adapter(x1)
//                                                      blocks.<i>.mlp.fc1, blocks.<i>.mlp.fc2
// LoRA may sit on qkv, proj, fc1 and fc2; the adapter branch is "blocks.<i>.adapter".
//
// Rows are tokens: [batch·tokens, dim]. Not thread-safe.
#ifndef FEDCL_CORE_NN_TRANSFORMER_BLOCK_H_
#define FEDCL_CORE_NN_TRANSFORMER_BLOCK_H_

#include <string>

#include "core/base/random.h"
#include "core/nn/adapter_branch.h"
#include "core/nn/attention.h"
#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/nn/ssf_site.h"

namespace fedcl::nn {

class TransformerBlock {
 public:
  // `prefix` is e.g. "blocks.0"; tensors are added to `params` under it.
  TransformerBlock(ParameterSet& params, const std::string& prefix, int dim, int heads,
                   int mlp_hidden);

  // timm's ViT init: Linear weights truncated-normal(0.02), biases zero, LayerNorm (1, 0).
  void Init(base::Rng& rng);

  // x: [batch·tokens, dim]; returns the block output (valid until the next Forward):
  // [batch·tokens, dim], or with `cls_only` just each sample's first (CLS) token, [batch, dim].
  // cls_only computes exactly those rows of the full output: keys and values still come from
  // every token, but attention runs for one query and proj, the MLP and the adapter run on one
  // row per sample. A classifier's last block needs nothing more.
  const Matrix& Forward(ConstMatrixRef x, int batch, int tokens, bool training,
                        bool cls_only = false);
  // dout has the shape Forward returned. Accumulates gradients; writes the gradient at the block
  // input ([batch·tokens, dim]) into dx unless null.
  void Backward(ConstMatrixRef dout, int batch, int tokens, Matrix* dx);

  // True if any tensor of the block, or attached to it, is trainable.
  bool HasTrainable() const;
  // The output of the last Forward (its shape as Forward returned it).
  const Matrix& output() const { return out_; }
  bool last_was_cls_only() const { return cls_only_; }

  LayerNorm norm1;
  SsfSite norm1_ssf;
  Linear qkv;
  SsfSite qkv_ssf;
  MultiHeadAttention attention;
  Linear proj;
  SsfSite proj_ssf;
  LayerNorm norm2;
  SsfSite norm2_ssf;
  Linear fc1;
  SsfSite fc1_ssf;
  Linear fc2;
  SsfSite fc2_ssf;
  AdapterBranch adapter;

 private:
  // Activations kept for Backward.
  bool cls_only_ = false;
  Matrix h1_, qkv_out_, attn_out_, proj_out_, x_cls_, x1_, h2_, f1_, gelu_cdf_, g_, f2_, out_;
  // Gradient workspaces.
  Matrix dx1_, df2_, dg_, dh2_, dtmp_, dproj_, dattn_, dqkv_, dh1_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_TRANSFORMER_BLOCK_H_
