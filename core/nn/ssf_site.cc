#include "core/nn/ssf_site.h"

namespace fedcl::nn {

void SsfSite::Forward(MatrixRef y, bool keep_input) {
  if (!active()) return;
  if (keep_input) input_ = y;
  auto gamma = scale_.row();
  auto beta = shift_.row();
  if (axis_ == ChannelAxis::kColumns) {
    y.array().rowwise() *= gamma.array();
    y.rowwise() += beta;
  } else {
    y.array().colwise() *= gamma.transpose().array();
    y.colwise() += beta.transpose();
  }
}

void SsfSite::Backward(MatrixRef dy) {
  if (!active()) return;
  auto gamma = scale_.row();
  if (axis_ == ChannelAxis::kColumns) {
    if (scale_.trainable()) scale_.grad_row() += dy.cwiseProduct(input_).colwise().sum();
    if (shift_.trainable()) shift_.grad_row() += dy.colwise().sum();
    dy.array().rowwise() *= gamma.array();
  } else {
    if (scale_.trainable()) {
      scale_.grad_row() += dy.cwiseProduct(input_).rowwise().sum().transpose();
    }
    if (shift_.trainable()) shift_.grad_row() += dy.rowwise().sum().transpose();
    dy.array().colwise() *= gamma.transpose().array();
  }
}

}  // namespace fedcl::nn
