#include "core/nn/transformer_block.h"

#include "core/nn/activations.h"
#include "core/nn/init.h"

namespace fedcl::nn {

TransformerBlock::TransformerBlock(ParameterSet& params, const std::string& prefix, int dim,
                                   int heads, int mlp_hidden)
    : norm1(params, prefix + ".norm1", dim),
      norm1_ssf(prefix + ".norm1", dim, ChannelAxis::kColumns, &norm1),
      qkv(params, prefix + ".attn.qkv", dim, 3 * dim),
      qkv_ssf(prefix + ".attn.qkv", 3 * dim, ChannelAxis::kColumns, &qkv),
      attention(dim, heads),
      proj(params, prefix + ".attn.proj", dim, dim),
      proj_ssf(prefix + ".attn.proj", dim, ChannelAxis::kColumns, &proj),
      norm2(params, prefix + ".norm2", dim),
      norm2_ssf(prefix + ".norm2", dim, ChannelAxis::kColumns, &norm2),
      fc1(params, prefix + ".mlp.fc1", dim, mlp_hidden),
      fc1_ssf(prefix + ".mlp.fc1", mlp_hidden, ChannelAxis::kColumns, &fc1),
      fc2(params, prefix + ".mlp.fc2", mlp_hidden, dim),
      fc2_ssf(prefix + ".mlp.fc2", dim, ChannelAxis::kColumns, &fc2),
      adapter(prefix + ".adapter", dim) {}

void TransformerBlock::Init(base::Rng& rng) {
  for (Linear* layer : {&qkv, &proj, &fc1, &fc2}) {
    InitTruncatedNormal(layer->weight(), 0.02, rng);
    InitConstant(layer->bias(), 0.0f);
  }
}

const Matrix& TransformerBlock::Forward(ConstMatrixRef x, int batch, int tokens, bool training,
                                        bool cls_only) {
  cls_only_ = cls_only;
  norm1.Forward(x, h1_);
  norm1_ssf.Forward(h1_, training);
  qkv.Forward(h1_, qkv_out_);
  qkv_ssf.Forward(qkv_out_, training);
  attention.Forward(qkv_out_, batch, tokens, cls_only, attn_out_);
  proj.Forward(attn_out_, proj_out_);
  proj_ssf.Forward(proj_out_, training);
  EnsureShape(x1_, proj_out_.rows(), x.cols());
  if (cls_only) {
    for (int b = 0; b < batch; ++b) x1_.row(b) = x.row(int64_t{b} * tokens) + proj_out_.row(b);
  } else {
    x1_.noalias() = x + proj_out_;
  }
  norm2.Forward(x1_, h2_);
  norm2_ssf.Forward(h2_, training);
  fc1.Forward(h2_, f1_);
  fc1_ssf.Forward(f1_, training);
  GeluForward(f1_, g_, training ? &gelu_cdf_ : nullptr);
  fc2.Forward(g_, f2_);
  fc2_ssf.Forward(f2_, training);
  EnsureShape(out_, x1_.rows(), x1_.cols());
  out_.noalias() = x1_ + f2_;
  if (adapter.extension() != nullptr) {
    adapter.extension()->ForwardAdd(x1_, x, batch, tokens, out_);
  } else {
    adapter.ForwardAdd(x1_, out_);
  }
  return out_;
}

void TransformerBlock::Backward(ConstMatrixRef dout, int batch, int tokens, Matrix* dx) {
  // Which gradients anyone needs: a stage's input gradient is needed if the block input's is,
  // or if something trainable sits before the stage in this block.
  const bool need_in = dx != nullptr;
  const bool t_norm1 = norm1.HasTrainable() || norm1_ssf.HasTrainable();
  const bool t_qkv = qkv.HasTrainable() || qkv_ssf.HasTrainable();
  const bool t_proj = proj.HasTrainable() || proj_ssf.HasTrainable();
  const bool t_norm2 = norm2.HasTrainable() || norm2_ssf.HasTrainable();
  const bool t_fc1 = fc1.HasTrainable() || fc1_ssf.HasTrainable();
  const bool need_h1 = need_in || t_norm1;
  const bool need_attn = need_h1 || t_qkv;
  const bool need_x1 = need_attn || t_proj;
  const bool need_h2 = need_x1 || t_norm2;
  const bool need_g = need_h2 || t_fc1;

  // MLP branch: out = x1 + ssf(fc2(GELU(ssf(fc1(ssf(LN2(x1))))))) + adapter(x1).
  df2_ = dout;
  fc2_ssf.Backward(df2_);
  fc2.Backward(g_, df2_, need_g ? &dg_ : nullptr);
  if (need_x1) dx1_ = dout;
  if (need_g) {
    GeluBackward(f1_, dg_, &gelu_cdf_);
    fc1_ssf.Backward(dg_);
    fc1.Backward(h2_, dg_, need_h2 ? &dh2_ : nullptr);
    if (need_h2) {
      norm2_ssf.Backward(dh2_);
      norm2.Backward(dh2_, need_x1 ? &dtmp_ : nullptr);
      if (need_x1) dx1_ += dtmp_;
    }
  }
  if (adapter.extension() != nullptr) {
    adapter.extension()->Backward(dout, need_x1 ? &dx1_ : nullptr);
  } else {
    adapter.Backward(x1_, dout, need_x1 ? &dx1_ : nullptr);
  }
  if (!need_x1) return;

  // Attention branch: x1 = x + ssf(proj(MHSA(ssf(qkv(ssf(LN1(x))))))).
  dproj_ = dx1_;
  proj_ssf.Backward(dproj_);
  proj.Backward(attn_out_, dproj_, need_attn ? &dattn_ : nullptr);
  if (need_attn) {
    attention.Backward(qkv_out_, dattn_, batch, tokens, dqkv_);
    qkv_ssf.Backward(dqkv_);
    qkv.Backward(h1_, dqkv_, need_h1 ? &dh1_ : nullptr);
    if (need_h1) {
      norm1_ssf.Backward(dh1_);
      norm1.Backward(dh1_, need_in ? &dtmp_ : nullptr);
    }
  }
  if (!need_in) return;  // need_in implies need_h1, so dtmp_ holds LN1's input gradient here
  if (cls_only_) {
    // The residual reaches only the CLS rows; every row gets LN1's share.
    *dx = dtmp_;
    for (int b = 0; b < batch; ++b) dx->row(int64_t{b} * tokens) += dx1_.row(b);
  } else {
    EnsureShape(*dx, dx1_.rows(), dx1_.cols());
    dx->noalias() = dx1_ + dtmp_;
  }
  if (adapter.extension() != nullptr) adapter.extension()->AddBlockInputGradient(*dx);
}

bool TransformerBlock::HasTrainable() const {
  return norm1.HasTrainable() || norm1_ssf.HasTrainable() || qkv.HasTrainable() ||
         qkv_ssf.HasTrainable() || proj.HasTrainable() || proj_ssf.HasTrainable() ||
         norm2.HasTrainable() || norm2_ssf.HasTrainable() || fc1.HasTrainable() ||
         fc1_ssf.HasTrainable() || fc2.HasTrainable() || fc2_ssf.HasTrainable() ||
         adapter.HasTrainable();
}

}  // namespace fedcl::nn
