#include "core/nn/attention.h"

#include <cmath>

#include "core/base/status_macros.h"

namespace fedcl::nn {
namespace {

using Strided = Eigen::OuterStride<>;
using BlockMap = Eigen::Map<Matrix, 0, Strided>;
using ConstBlockMap = Eigen::Map<const Matrix, 0, Strided>;

}  // namespace

MultiHeadAttention::MultiHeadAttention(int dim, int heads)
    : dim_(dim), heads_(heads), head_dim_(dim / heads) {
  FEDCL_CHECK(dim % heads == 0) << "dim " << dim << " not divisible by heads " << heads;
  scale_ = 1.0f / std::sqrt(static_cast<float>(head_dim_));
}

void MultiHeadAttention::Forward(ConstMatrixRef qkv, int batch, int tokens, Matrix& out) {
  const Eigen::Index stride = qkv.outerStride();
  EnsureShape(out, int64_t{batch} * tokens, dim_);
  EnsureShape(probs_, int64_t{batch} * heads_ * tokens, tokens);
  for (int b = 0; b < batch; ++b) {
    const float* rows = qkv.data() + int64_t{b} * tokens * stride;
    for (int h = 0; h < heads_; ++h) {
      ConstBlockMap q(rows + h * head_dim_, tokens, head_dim_, Strided(stride));
      ConstBlockMap k(rows + dim_ + h * head_dim_, tokens, head_dim_, Strided(stride));
      ConstBlockMap v(rows + 2 * dim_ + h * head_dim_, tokens, head_dim_, Strided(stride));
      auto p = probs_.middleRows((int64_t{b} * heads_ + h) * tokens, tokens);
      // The blocks are tiny (17×16 for the default ViT): a coefficient-wise product beats
      // the packing overhead of a general matrix product.
      p.noalias() = (q.lazyProduct(k.transpose())) * scale_;
      for (int t = 0; t < tokens; ++t) {
        auto row = p.row(t);
        float max = row.maxCoeff();
        row = (row.array() - max).exp().matrix();
        row /= row.sum();
      }
      out.block(int64_t{b} * tokens, h * head_dim_, tokens, head_dim_).noalias() = p.lazyProduct(v);
    }
  }
}

void MultiHeadAttention::Backward(ConstMatrixRef qkv, ConstMatrixRef dout, int batch, int tokens,
                                  Matrix& dqkv) {
  const Eigen::Index stride = qkv.outerStride();
  EnsureShape(dqkv, qkv.rows(), qkv.cols());
  EnsureShape(dprobs_, tokens, tokens);
  const Eigen::Index dstride = dqkv.cols();
  for (int b = 0; b < batch; ++b) {
    const float* rows = qkv.data() + int64_t{b} * tokens * stride;
    float* drows = dqkv.data() + int64_t{b} * tokens * dstride;
    for (int h = 0; h < heads_; ++h) {
      ConstBlockMap q(rows + h * head_dim_, tokens, head_dim_, Strided(stride));
      ConstBlockMap k(rows + dim_ + h * head_dim_, tokens, head_dim_, Strided(stride));
      ConstBlockMap v(rows + 2 * dim_ + h * head_dim_, tokens, head_dim_, Strided(stride));
      BlockMap dq(drows + h * head_dim_, tokens, head_dim_, Strided(dstride));
      BlockMap dk(drows + dim_ + h * head_dim_, tokens, head_dim_, Strided(dstride));
      BlockMap dv(drows + 2 * dim_ + h * head_dim_, tokens, head_dim_, Strided(dstride));
      auto p = probs_.middleRows((int64_t{b} * heads_ + h) * tokens, tokens);
      auto dout_h = dout.block(int64_t{b} * tokens, h * head_dim_, tokens, head_dim_);
      // O = P·V  ⇒  dV = Pᵀ·dO, dP = dO·Vᵀ.
      dv.noalias() = p.transpose().lazyProduct(dout_h);
      dprobs_.noalias() = dout_h.lazyProduct(v.transpose());
      // Softmax backward per row: dS = P ⊙ (dP − Σ_j dP_j P_j); then fold in the 1/sqrt(d) scale.
      for (int t = 0; t < tokens; ++t) {
        float dot = dprobs_.row(t).dot(p.row(t));
        dprobs_.row(t) = (p.row(t).array() * (dprobs_.row(t).array() - dot) * scale_).matrix();
      }
      // S = Q·Kᵀ  ⇒  dQ = dS·K, dK = dSᵀ·Q.
      dq.noalias() = dprobs_.lazyProduct(k);
      dk.noalias() = dprobs_.transpose().lazyProduct(q);
    }
  }
}

}  // namespace fedcl::nn
