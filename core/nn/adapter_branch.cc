#include "core/nn/adapter_branch.h"

namespace fedcl::nn {

bool AdapterBranch::HasTrainable() const {
  if (extension_ != nullptr) return extension_->HasTrainable();
  return binding_.down_weight.trainable() || binding_.down_bias.trainable() ||
         binding_.up_weight.trainable() || binding_.up_bias.trainable();
}

void AdapterBranch::ForwardAdd(ConstMatrixRef x, MatrixRef out) {
  if (!active()) return;
  const int r = binding_.bottleneck;
  EnsureShape(hidden_, x.rows(), r);
  hidden_.noalias() = x * binding_.down_weight.matrix(r, dim_).transpose();
  hidden_.rowwise() += binding_.down_bias.row();
  hidden_ = hidden_.cwiseMax(0.0f);
  out.noalias() += hidden_ * binding_.up_weight.matrix(dim_, r).transpose();
  out.rowwise() += binding_.up_bias.row();
}

void AdapterBranch::Backward(ConstMatrixRef x, ConstMatrixRef dout, Matrix* dx) {
  if (!active()) return;
  const int r = binding_.bottleneck;
  const AdapterBinding& b = binding_;
  if (b.up_weight.trainable())
    b.up_weight.grad_matrix(dim_, r).noalias() += dout.transpose() * hidden_;
  if (b.up_bias.trainable()) AddColumnSums(dout, b.up_bias.grad_row());
  bool down_trainable = b.down_weight.trainable() || b.down_bias.trainable();
  if (!down_trainable && dx == nullptr) return;
  EnsureShape(dhidden_, dout.rows(), r);
  dhidden_.noalias() = dout * b.up_weight.matrix(dim_, r);
  dhidden_ = (hidden_.array() > 0.0f).select(dhidden_, 0.0f);
  if (b.down_weight.trainable())
    b.down_weight.grad_matrix(r, dim_).noalias() += dhidden_.transpose() * x;
  if (b.down_bias.trainable()) AddColumnSums(dhidden_, b.down_bias.grad_row());
  if (dx != nullptr) dx->noalias() += dhidden_ * b.down_weight.matrix(r, dim_);
}

}  // namespace fedcl::nn
