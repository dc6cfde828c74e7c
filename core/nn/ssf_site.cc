#include "core/nn/ssf_site.h"

namespace fedcl::nn {

// Row by row, so every pass is contiguous: copy-for-backward and transform fuse into one sweep.

void SsfSite::Forward(MatrixRef y, bool keep_input) {
  if (!active()) return;
  if (keep_input) EnsureShape(input_, y.rows(), y.cols());
  auto gamma = scale_.row();
  auto beta = shift_.row();
  for (Eigen::Index r = 0; r < y.rows(); ++r) {
    auto row = y.row(r);
    if (keep_input) input_.row(r) = row;
    if (axis_ == ChannelAxis::kColumns) {
      row = row.cwiseProduct(gamma) + beta;
    } else {
      row = (row.array() * gamma[r] + beta[r]).matrix();
    }
  }
}

void SsfSite::Backward(MatrixRef dy) {
  if (!active()) return;
  auto gamma = scale_.row();
  const bool scale_grad = scale_.trainable();
  const bool shift_grad = shift_.trainable();
  for (Eigen::Index r = 0; r < dy.rows(); ++r) {
    auto row = dy.row(r);
    if (axis_ == ChannelAxis::kColumns) {
      if (scale_grad) scale_.grad_row() += row.cwiseProduct(input_.row(r));
      if (shift_grad) shift_.grad_row() += row;
      row = row.cwiseProduct(gamma);
    } else {
      if (scale_grad) scale_.grad()[r] += row.dot(input_.row(r));
      if (shift_grad) shift_.grad()[r] += row.sum();
      row *= gamma[r];
    }
  }
}

}  // namespace fedcl::nn
