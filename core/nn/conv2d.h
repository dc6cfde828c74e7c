// 2-D convolution over the "channel rows" layout (tensor.h): input [Cin, N·H·W], output
// [Cout, N·Ho·Wo], where row c holds channel c of every image, image after image.
//
// Computed as im2col + one matrix product per chunk of images. Chunks are sized so the unfolded
// input stays in cache (a whole-batch unfold of the FedAU CNN's second layer at batch 128 is
// 29 MB and halves the product's speed). Backward recomputes the unfold rather than keeping it,
// so memory stays at one chunk whatever the batch size.
//
// The weight is [Cout, Cin, K, K] (PyTorch layout), the bias [Cout]. Any kernel size, stride and
// zero padding. Backward must follow the Forward of the same batch. Not thread-safe.
#ifndef FEDCL_CORE_NN_CONV2D_H_
#define FEDCL_CORE_NN_CONV2D_H_

#include <string>
#include <vector>

#include "core/base/random.h"
#include "core/nn/fold.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

struct ConvGeometry {
  int channels = 0;
  int height = 0;
  int width = 0;
};

class Conv2d final : public ScaleShiftFoldable {
 public:
  // Adds "<name>.weight" and "<name>.bias" to `params`.
  Conv2d(ParameterSet& params, const std::string& name, int in_channels, int out_channels,
         int kernel = 3, int stride = 1, int padding = 1);

  // PyTorch's default init: U(±1/sqrt(fan_in)) for weight and bias, fan_in = Cin·K·K.
  void InitDefault(base::Rng& rng);
  // Kaiming-normal weight, zero bias (the FedAU reference init).
  void InitKaimingNormal(base::Rng& rng);

  // Output geometry for an input of `in` (channels must match).
  ConvGeometry OutputGeometry(const ConvGeometry& in) const;

  // x: [Cin, batch·H·W] → y: [Cout, batch·Ho·Wo].
  void Forward(ConstMatrixRef x, int batch, const ConvGeometry& in, Matrix& y);
  // Accumulates dW, db if trainable; writes dx (same shape as x) unless null.
  void Backward(ConstMatrixRef x, ConstMatrixRef dy, int batch, const ConvGeometry& in, Matrix* dx);

  void FoldScaleShift(const float* gamma, const float* beta) override;
  int fold_channels() const override { return out_channels_; }
  bool HasTrainable() const { return weight_.trainable() || bias_.trainable(); }

  const ParamRef& weight() const { return weight_; }
  const ParamRef& bias() const { return bias_; }

 private:
  int ImagesPerChunk(const ConvGeometry& in) const;
  // Unfolds images [first, first + count) into col_ ([Cin·K·K, count·Ho·Wo]).
  void Im2Col(ConstMatrixRef x, int first, int count, const ConvGeometry& in, float* col) const;
  // Adds the folded-back columns into dx for images [first, first + count).
  void Col2ImAdd(const float* col, int first, int count, const ConvGeometry& in,
                 MatrixRef dx) const;
  // The traversal Im2Col and Col2ImAdd share (see conv2d.cc).
  template <typename Fn>
  void ForEachUnfoldedRow(int first, int count, const ConvGeometry& in, Eigen::Index channel_stride,
                          Fn fn) const;

  int in_channels_;
  int out_channels_;
  int kernel_;
  int stride_;
  int padding_;
  ParamRef weight_;
  ParamRef bias_;
  AlignedFloats col_;
  AlignedFloats dcol_;
};

// Max pooling with a square window and stride equal to the window (2×2/2 in our CNN), over the
// channel-rows layout. Remembers where each maximum came from for Backward.
class MaxPool2d {
 public:
  explicit MaxPool2d(int window = 2) : window_(window) {}
  ConvGeometry OutputGeometry(const ConvGeometry& in) const {
    return {in.channels, in.height / window_, in.width / window_};
  }
  void Forward(ConstMatrixRef x, int batch, const ConvGeometry& in, Matrix& y);
  // dx is resized to the input's shape and overwritten.
  void Backward(ConstMatrixRef dy, int batch, const ConvGeometry& in, Matrix& dx);

 private:
  int window_;
  std::vector<int32_t> argmax_;  // per output element: column index of the max in x's row
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_CONV2D_H_
