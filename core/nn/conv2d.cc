#include "core/nn/conv2d.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/base/status_macros.h"
#include "core/nn/init.h"

namespace fedcl::nn {
namespace {

// Unfolded-input budget per chunk, in floats: 192K floats = 768 KB, which keeps the product's
// right-hand side in a 1 MB L2 alongside the weights.
constexpr int64_t kColumnBudgetFloats = 192 * 1024;

}  // namespace

Conv2d::Conv2d(ParameterSet& params, const std::string& name, int in_channels, int out_channels,
               int kernel, int stride, int padding)
    : in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_(kernel),
      stride_(stride),
      padding_(padding) {
  weight_ = AddParam(params, name + ".weight", {out_channels, in_channels, kernel, kernel}, true);
  bias_ = AddParam(params, name + ".bias", {out_channels}, true);
}

void Conv2d::InitDefault(base::Rng& rng) {
  int fan_in = in_channels_ * kernel_ * kernel_;
  InitKaimingUniform(weight_, fan_in, rng);
  double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  InitUniform(bias_, -bound, bound, rng);
}

void Conv2d::InitKaimingNormal(base::Rng& rng) {
  nn::InitKaimingNormal(weight_, in_channels_ * kernel_ * kernel_, rng);
  InitConstant(bias_, 0.0f);
}

ConvGeometry Conv2d::OutputGeometry(const ConvGeometry& in) const {
  return {out_channels_, (in.height + 2 * padding_ - kernel_) / stride_ + 1,
          (in.width + 2 * padding_ - kernel_) / stride_ + 1};
}

int Conv2d::ImagesPerChunk(const ConvGeometry& in) const {
  ConvGeometry out = OutputGeometry(in);
  int64_t per_image = int64_t{in_channels_} * kernel_ * kernel_ * out.height * out.width;
  return static_cast<int>(std::max<int64_t>(1, kColumnBudgetFloats / per_image));
}

// Visits every (unfolded row, image, output row) of the im2col matrix for images
// [first, first + count) and calls fn(col_offset, image_offset, ox_begin, ox_end, kx):
// col_offset is where that output row's out.width floats start in the unfolded matrix,
// image_offset where the input row it reads starts in the channel-rows input (with row stride
// `channel_stride`), or -1 when the kernel row falls in the padding, and [ox_begin, ox_end) are
// the output columns whose input column lies inside the image. Im2Col and Col2ImAdd differ only
// in what fn does with the two places.
template <typename Fn>
void Conv2d::ForEachUnfoldedRow(int first, int count, const ConvGeometry& in,
                                Eigen::Index channel_stride, Fn fn) const {
  const ConvGeometry out = OutputGeometry(in);
  const int64_t in_plane = int64_t{in.height} * in.width;
  const int64_t out_plane = int64_t{out.height} * out.width;
  const int64_t row_length = count * out_plane;
  for (int c = 0; c < in_channels_; ++c) {
    for (int ky = 0; ky < kernel_; ++ky) {
      for (int kx = 0; kx < kernel_; ++kx) {
        const int64_t col_row = ((int64_t{c} * kernel_ + ky) * kernel_ + kx) * row_length;
        const int ox_begin = std::clamp((padding_ - kx + stride_ - 1) / stride_, 0, out.width);
        const int ox_end =
            std::clamp((in.width + padding_ - kx + stride_ - 1) / stride_, ox_begin, out.width);
        for (int i = 0; i < count; ++i) {
          const int64_t image = c * channel_stride + (first + i) * in_plane;
          for (int oy = 0; oy < out.height; ++oy) {
            const int iy = oy * stride_ - padding_ + ky;
            const bool inside = iy >= 0 && iy < in.height;
            fn(col_row + i * out_plane + int64_t{oy} * out.width,
               inside ? image + int64_t{iy} * in.width : int64_t{-1}, ox_begin, ox_end, kx);
          }
        }
      }
    }
  }
}

void Conv2d::Im2Col(ConstMatrixRef x, int first, int count, const ConvGeometry& in,
                    float* col) const {
  const int width = OutputGeometry(in).width;
  ForEachUnfoldedRow(
      first, count, in, x.outerStride(),
      [&](int64_t col_offset, int64_t image_offset, int ox_begin, int ox_end, int kx) {
        float* dst = col + col_offset;
        if (image_offset < 0) {
          std::fill(dst, dst + width, 0.0f);
          return;
        }
        const float* src = x.data() + image_offset - padding_ + kx;
        std::fill(dst, dst + ox_begin, 0.0f);
        if (stride_ == 1) {
          std::memcpy(dst + ox_begin, src + ox_begin, sizeof(float) * (ox_end - ox_begin));
        } else {
          for (int ox = ox_begin; ox < ox_end; ++ox) dst[ox] = src[ox * stride_];
        }
        std::fill(dst + ox_end, dst + width, 0.0f);
      });
}

void Conv2d::Col2ImAdd(const float* col, int first, int count, const ConvGeometry& in,
                       MatrixRef dx) const {
  ForEachUnfoldedRow(
      first, count, in, dx.outerStride(),
      [&](int64_t col_offset, int64_t image_offset, int ox_begin, int ox_end, int kx) {
        if (image_offset < 0) return;
        const float* src = col + col_offset;
        float* dst = dx.data() + image_offset - padding_ + kx;
        for (int ox = ox_begin; ox < ox_end; ++ox) dst[ox * stride_] += src[ox];
      });
}

void Conv2d::Forward(ConstMatrixRef x, int batch, const ConvGeometry& in, Matrix& y) {
  FEDCL_CHECK(in.channels == in_channels_ && x.rows() == in_channels_ &&
              x.cols() == int64_t{batch} * in.height * in.width)
      << "conv input shape";
  const ConvGeometry out = OutputGeometry(in);
  const int64_t out_plane = int64_t{out.height} * out.width;
  const int64_t patch = int64_t{in_channels_} * kernel_ * kernel_;
  EnsureShape(y, out_channels_, batch * out_plane);
  auto w = weight_.matrix(out_channels_, patch);
  const int chunk = ImagesPerChunk(in);
  col_.resize(static_cast<size_t>(patch * std::min(chunk, batch) * out_plane));
  for (int first = 0; first < batch; first += chunk) {
    const int count = std::min(chunk, batch - first);
    Im2Col(x, first, count, in, col_.data());
    ConstMatrixMap col(col_.data(), patch, count * out_plane);
    y.middleCols(first * out_plane, count * out_plane).noalias() = w * col;
  }
  y.colwise() += bias_.row().transpose();
}

void Conv2d::Backward(ConstMatrixRef x, ConstMatrixRef dy, int batch, const ConvGeometry& in,
                      Matrix* dx) {
  const ConvGeometry out = OutputGeometry(in);
  const int64_t out_plane = int64_t{out.height} * out.width;
  const int64_t patch = int64_t{in_channels_} * kernel_ * kernel_;
  if (bias_.trainable()) bias_.grad_row() += dy.rowwise().sum().transpose();
  const bool weight_grad = weight_.trainable();
  if (!weight_grad && dx == nullptr) return;
  auto w = weight_.matrix(out_channels_, patch);
  if (dx != nullptr) {
    EnsureShape(*dx, in_channels_, x.cols());
    dx->setZero();
  }
  const int chunk = ImagesPerChunk(in);
  const size_t chunk_floats = static_cast<size_t>(patch * std::min(chunk, batch) * out_plane);
  col_.resize(chunk_floats);
  if (dx != nullptr) dcol_.resize(chunk_floats);
  for (int first = 0; first < batch; first += chunk) {
    const int count = std::min(chunk, batch - first);
    auto dy_chunk = dy.middleCols(first * out_plane, count * out_plane);
    if (weight_grad) {
      Im2Col(x, first, count, in, col_.data());
      ConstMatrixMap col(col_.data(), patch, count * out_plane);
      weight_.grad_matrix(out_channels_, patch).noalias() += dy_chunk * col.transpose();
    }
    if (dx != nullptr) {
      MatrixMap dcol(dcol_.data(), patch, count * out_plane);
      dcol.noalias() = w.transpose() * dy_chunk;
      Col2ImAdd(dcol_.data(), first, count, in, *dx);
    }
  }
}

void Conv2d::FoldScaleShift(const float* gamma, const float* beta) {
  const int64_t patch = int64_t{in_channels_} * kernel_ * kernel_;
  ConstRowVectorMap g(gamma, out_channels_);
  auto w = weight_.matrix(out_channels_, patch);
  w = g.transpose().asDiagonal() * w;
  bias_.row() = bias_.row().cwiseProduct(g) + ConstRowVectorMap(beta, out_channels_);
}

void MaxPool2d::Forward(ConstMatrixRef x, int batch, const ConvGeometry& in, Matrix& y) {
  const ConvGeometry out = OutputGeometry(in);
  const int64_t in_plane = int64_t{in.height} * in.width;
  const int64_t out_plane = int64_t{out.height} * out.width;
  EnsureShape(y, in.channels, batch * out_plane);
  argmax_.resize(static_cast<size_t>(in.channels * batch * out_plane));
  int32_t* arg = argmax_.data();
  for (int c = 0; c < in.channels; ++c) {
    const float* src_row = x.row(c).data();
    float* dst = y.row(c).data();
    for (int n = 0; n < batch; ++n) {
      const int64_t base = n * in_plane;
      for (int oy = 0; oy < out.height; ++oy) {
        for (int ox = 0; ox < out.width; ++ox) {
          int64_t best = base + int64_t{oy} * window_ * in.width + ox * window_;
          float best_value = src_row[best];
          for (int dy = 0; dy < window_; ++dy) {
            for (int dx = 0; dx < window_; ++dx) {
              int64_t at = base + int64_t{oy * window_ + dy} * in.width + ox * window_ + dx;
              if (src_row[at] > best_value) {
                best_value = src_row[at];
                best = at;
              }
            }
          }
          *dst++ = best_value;
          *arg++ = static_cast<int32_t>(best);
        }
      }
    }
  }
}

void MaxPool2d::Backward(ConstMatrixRef dy, int batch, const ConvGeometry& in, Matrix& dx) {
  EnsureShape(dx, in.channels, int64_t{batch} * in.height * in.width);
  dx.setZero();
  const int32_t* arg = argmax_.data();
  for (int c = 0; c < in.channels; ++c) {
    const float* src = dy.row(c).data();
    float* dst = dx.row(c).data();
    for (Eigen::Index i = 0; i < dy.cols(); ++i) dst[*arg++] += src[i];
  }
}

}  // namespace fedcl::nn
