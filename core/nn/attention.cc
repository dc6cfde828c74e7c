#include "core/nn/attention.h"

#include <algorithm>
#include <cmath>

#include "core/base/status_macros.h"
#include "core/nn/small_matmul.h"

namespace fedcl::nn {
namespace {

// Dense, zero-padded copies of one head's slice: rows of `width` floats (width ≥ cols).
void Gather(const float* src, Eigen::Index stride, int rows, int cols, int width, float* dst) {
  for (int t = 0; t < rows; ++t) {
    std::copy(src + t * stride, src + t * stride + cols, dst + t * width);
    std::fill(dst + t * width + cols, dst + (t + 1) * width, 0.0f);
  }
}

// Transposed copy: dst[j · width + t] = src[t · stride + j], zero beyond `rows` columns.
void GatherTransposed(const float* src, Eigen::Index stride, int rows, int cols, int width,
                      float* dst) {
  std::fill(dst, dst + cols * width, 0.0f);
  for (int t = 0; t < rows; ++t) {
    for (int j = 0; j < cols; ++j) dst[j * width + t] = src[t * stride + j];
  }
}

// dst [cols, rows] = srcᵀ, with src rows `src_width` apart.
void Transpose(const float* src, int src_width, int rows, int cols, float* dst) {
  for (int t = 0; t < rows; ++t) {
    for (int s = 0; s < cols; ++s) dst[s * rows + t] = src[t * src_width + s];
  }
}

void Scatter(const float* src, int rows, int cols, int width, float* dst, Eigen::Index stride) {
  for (int t = 0; t < rows; ++t)
    std::copy(src + t * width, src + t * width + cols, dst + t * stride);
}

}  // namespace

MultiHeadAttention::MultiHeadAttention(int dim, int heads)
    : dim_(dim), heads_(heads), head_dim_(dim / heads) {
  FEDCL_CHECK(dim % heads == 0) << "dim " << dim << " not divisible by heads " << heads;
  scale_ = 1.0f / std::sqrt(static_cast<float>(head_dim_));
}

void MultiHeadAttention::Forward(ConstMatrixRef qkv, int batch, int tokens, bool cls_only,
                                 Matrix& out) {
  const Eigen::Index stride = qkv.outerStride();
  const int hd = head_dim_;
  const int hdp = PadWidth(hd);     // padded head width
  const int tp = PadWidth(tokens);  // padded token count
  const int nq = cls_only ? 1 : tokens;
  queries_ = nq;
  EnsureShape(out, int64_t{batch} * nq, dim_);
  // probs_ keeps P padded to tp columns (zeros beyond `tokens`), one block per (sample, head).
  EnsureShape(probs_, int64_t{batch} * heads_ * nq, tp);
  const size_t t = tokens;
  workspace_.resize(3 * t * hdp + size_t{1} * hdp * tp);
  float* q = workspace_.data();
  float* kt = q + tokens * hdp;
  float* v = kt + hdp * tp;
  float* o = v + tokens * hdp;
  for (int b = 0; b < batch; ++b) {
    const float* rows = qkv.data() + int64_t{b} * tokens * stride;
    for (int h = 0; h < heads_; ++h) {
      Gather(rows + h * hd, stride, nq, hd, hdp, q);
      GatherTransposed(rows + dim_ + h * hd, stride, tokens, hd, tp, kt);
      Gather(rows + 2 * dim_ + h * hd, stride, tokens, hd, hdp, v);
      float* p = probs_.data() + (int64_t{b} * heads_ + h) * nq * tp;
      SmallMatMul(q, hdp, nq, hd, kt, tp, p);  // S = Q·Kᵀ, [nq, tp]
      for (int t = 0; t < nq; ++t) {
        // Eigen's exp is vectorised; the padding columns stay zero.
        Eigen::Map<Eigen::ArrayXf> row(p + t * tp, tokens);
        row = ((row - row.maxCoeff()) * scale_).exp();
        row /= row.sum();
        std::fill(p + t * tp + tokens, p + (t + 1) * tp, 0.0f);
      }
      SmallMatMul(p, tp, nq, tokens, v, hdp, o);  // O = P·V, [nq, hdp]
      Scatter(o, nq, hd, hdp, out.data() + int64_t{b} * nq * dim_ + h * hd, dim_);
    }
  }
}

void MultiHeadAttention::Backward(ConstMatrixRef qkv, ConstMatrixRef dout, int batch, int tokens,
                                  Matrix& dqkv) {
  const Eigen::Index stride = qkv.outerStride();
  const Eigen::Index dout_stride = dout.outerStride();
  const int hd = head_dim_;
  const int hdp = PadWidth(hd);
  const int tp = PadWidth(tokens);
  const int nq = queries_;
  EnsureShape(dqkv, qkv.rows(), qkv.cols());
  // Only query rows get a query gradient; with cls_only the others must read zero.
  if (nq != tokens) dqkv.leftCols(dim_).setZero();
  const Eigen::Index dstride = dqkv.cols();
  const size_t t = tokens;
  workspace_.resize(7 * t * hdp + size_t{1} * hdp * tp + t * tp + 2 * t * t);
  float* q = workspace_.data();
  float* k = q + tokens * hdp;
  float* dout_h = k + tokens * hdp;
  float* dq = dout_h + tokens * hdp;
  float* dk = dq + tokens * hdp;
  float* dv = dk + tokens * hdp;
  float* spare = dv + tokens * hdp;
  float* vt = spare + tokens * hdp;
  float* ds = vt + hdp * tp;
  float* pt = ds + tokens * tp;
  float* dst = pt + tokens * tokens;
  for (int b = 0; b < batch; ++b) {
    const float* rows = qkv.data() + int64_t{b} * tokens * stride;
    float* drows = dqkv.data() + int64_t{b} * tokens * dstride;
    for (int h = 0; h < heads_; ++h) {
      Gather(rows + h * hd, stride, nq, hd, hdp, q);
      Gather(rows + dim_ + h * hd, stride, tokens, hd, hdp, k);
      GatherTransposed(rows + 2 * dim_ + h * hd, stride, tokens, hd, tp, vt);
      Gather(dout.data() + int64_t{b} * nq * dout_stride + h * hd, dout_stride, nq, hd, hdp,
             dout_h);
      const float* p = probs_.data() + (int64_t{b} * heads_ + h) * nq * tp;
      // O = P·V  ⇒  dV = Pᵀ·dO and dP = dO·Vᵀ.
      Transpose(p, tp, nq, tokens, pt);
      SmallMatMul(pt, nq, tokens, nq, dout_h, hdp, dv);
      SmallMatMul(dout_h, hdp, nq, hd, vt, tp, ds);
      // Softmax backward per row, with the 1/sqrt(d) scale folded in:
      // dS = scale · P ⊙ (dP − Σ_j dP_j P_j).
      for (int t = 0; t < nq; ++t) {
        const float* pr = p + t * tp;
        float* dr = ds + t * tp;
        float dot = 0.0f;
        for (int s = 0; s < tokens; ++s) dot += dr[s] * pr[s];
        for (int s = 0; s < tokens; ++s) dr[s] = scale_ * pr[s] * (dr[s] - dot);
      }
      // S = Q·Kᵀ  ⇒  dQ = dS·K and dK = dSᵀ·Q.
      SmallMatMul(ds, tp, nq, tokens, k, hdp, dq);
      Transpose(ds, tp, nq, tokens, dst);
      SmallMatMul(dst, nq, tokens, nq, q, hdp, dk);
      Scatter(dq, nq, hd, hdp, drows + h * hd, dstride);
      Scatter(dk, tokens, hd, hdp, drows + dim_ + h * hd, dstride);
      Scatter(dv, tokens, hd, hdp, drows + 2 * dim_ + h * hd, dstride);
    }
  }
}

}  // namespace fedcl::nn
