#include "core/nn/cnn_backbone.h"

#include "core/base/status_macros.h"
#include "core/nn/activations.h"

namespace fedcl::nn {
namespace {

// [n, C·P] (sample rows, channel-major) ⇄ [C, n·P] (channel rows).
void SampleRowsToChannelRows(ConstMatrixRef in, int channels, Matrix& out) {
  const int64_t n = in.rows();
  const int64_t plane = in.cols() / channels;
  EnsureShape(out, channels, n * plane);
  for (int64_t s = 0; s < n; ++s) {
    for (int c = 0; c < channels; ++c) {
      out.row(c).segment(s * plane, plane) = in.row(s).segment(int64_t{c} * plane, plane);
    }
  }
}

void ChannelRowsToSampleRows(ConstMatrixRef in, int64_t n, Matrix& out) {
  const int64_t channels = in.rows();
  const int64_t plane = in.cols() / n;
  EnsureShape(out, n, channels * plane);
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t c = 0; c < channels; ++c) {
      out.row(s).segment(c * plane, plane) = in.row(c).segment(s * plane, plane);
    }
  }
}

}  // namespace

CnnBackbone::CnnBackbone(const ModelConfig& config, base::Rng& rng)
    : Backbone("backbone"),
      input_geometry_{config.image_channels, config.image_height, config.image_width},
      conv1_(params_, "conv1", config.image_channels, config.cnn.conv1_channels),
      conv1_ssf_("conv1", config.cnn.conv1_channels, ChannelAxis::kRows, &conv1_),
      conv2_(params_, "conv2", config.cnn.conv1_channels, config.cnn.conv2_channels),
      conv2_ssf_("conv2", config.cnn.conv2_channels, ChannelAxis::kRows, &conv2_),
      fc_(params_, "fc",
          config.cnn.conv2_channels * (config.image_height / 4) * (config.image_width / 4),
          config.cnn.hidden),
      fc_ssf_("fc", config.cnn.hidden, ChannelAxis::kColumns, &fc_) {
  conv1_out_ = conv1_.OutputGeometry(input_geometry_);
  pool1_out_ = pool1_.OutputGeometry(conv1_out_);
  conv2_out_ = conv2_.OutputGeometry(pool1_out_);
  pool2_out_ = pool2_.OutputGeometry(conv2_out_);
  conv1_.InitKaimingNormal(rng);
  conv2_.InitKaimingNormal(rng);
  fc_.InitKaimingNormal(rng);
  ssf_sites_ = {&conv1_ssf_, &conv2_ssf_, &fc_ssf_};
  lora_targets_ = {&fc_};
}

const Matrix& CnnBackbone::Forward(ConstMatrixRef images, bool training) {
  FEDCL_CHECK(images.cols() ==
              int64_t{input_geometry_.channels} * input_geometry_.height * input_geometry_.width)
      << "CNN input width";
  batch_ = static_cast<int>(images.rows());
  SampleRowsToChannelRows(images, input_geometry_.channels, input_);
  conv1_.Forward(input_, batch_, input_geometry_, y1_);
  conv1_ssf_.Forward(y1_, training);
  ReluForward(y1_);
  pool1_.Forward(y1_, batch_, conv1_out_, p1_);
  conv2_.Forward(p1_, batch_, pool1_out_, y2_);
  conv2_ssf_.Forward(y2_, training);
  ReluForward(y2_);
  pool2_.Forward(y2_, batch_, conv2_out_, p2_);
  ChannelRowsToSampleRows(p2_, batch_, flat_);
  fc_.Forward(flat_, features_);
  fc_ssf_.Forward(features_, training);
  ReluForward(features_);
  return features_;
}

void CnnBackbone::Backward(ConstMatrixRef dfeatures) {
  const bool t_conv1 = conv1_.HasTrainable() || conv1_ssf_.HasTrainable();
  const bool t_conv2 = conv2_.HasTrainable() || conv2_ssf_.HasTrainable();
  const bool need_p1 = t_conv1;
  const bool need_flat = need_p1 || t_conv2;

  dfeatures_ = dfeatures;
  ReluBackward(features_, dfeatures_);
  fc_ssf_.Backward(dfeatures_);
  fc_.Backward(flat_, dfeatures_, need_flat ? &dflat_ : nullptr);
  if (!need_flat) return;

  SampleRowsToChannelRows(dflat_, pool2_out_.channels, dp2_);
  pool2_.Backward(dp2_, batch_, conv2_out_, dy2_);
  ReluBackward(y2_, dy2_);
  conv2_ssf_.Backward(dy2_);
  conv2_.Backward(p1_, dy2_, batch_, pool1_out_, need_p1 ? &dp1_ : nullptr);
  if (!need_p1) return;

  pool1_.Backward(dp1_, batch_, conv1_out_, dy1_);
  ReluBackward(y1_, dy1_);
  conv1_ssf_.Backward(dy1_);
  conv1_.Backward(input_, dy1_, batch_, input_geometry_, nullptr);
}

}  // namespace fedcl::nn
