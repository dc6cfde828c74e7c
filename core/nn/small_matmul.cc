#include "core/nn/small_matmul.h"

#include <Eigen/Core>
#include <algorithm>

namespace fedcl::nn {
namespace {

// Eigen's fixed-size row vectors become a few SIMD registers; two output rows share each load
// of b's row.
template <int kWidth>
void RowKernel(const float* a, int a_stride, int rows, int inner, const float* b, float* c) {
  using Row = Eigen::Matrix<float, 1, kWidth>;
  using ConstRowMap = Eigen::Map<const Row>;
  int r = 0;
  for (; r + 1 < rows; r += 2) {
    Row acc0 = Row::Zero();
    Row acc1 = Row::Zero();
    const float* a0 = a + r * a_stride;
    const float* a1 = a0 + a_stride;
    for (int k = 0; k < inner; ++k) {
      ConstRowMap b_row(b + k * kWidth);
      acc0.noalias() += a0[k] * b_row;
      acc1.noalias() += a1[k] * b_row;
    }
    Eigen::Map<Row>(c + r * kWidth) = acc0;
    Eigen::Map<Row>(c + (r + 1) * kWidth) = acc1;
  }
  for (; r < rows; ++r) {
    Row acc = Row::Zero();
    const float* a_row = a + r * a_stride;
    for (int k = 0; k < inner; ++k) acc.noalias() += a_row[k] * ConstRowMap(b + k * kWidth);
    Eigen::Map<Row>(c + r * kWidth) = acc;
  }
}

// Any width: accumulate into the output row directly.
void GenericKernel(const float* a, int a_stride, int rows, int inner, const float* b, int width,
                   float* c) {
  for (int r = 0; r < rows; ++r) {
    float* c_row = c + r * width;
    std::fill(c_row, c_row + width, 0.0f);
    for (int k = 0; k < inner; ++k) {
      const float scale = a[r * a_stride + k];
      const float* b_row = b + k * width;
      for (int n = 0; n < width; ++n) c_row[n] += scale * b_row[n];
    }
  }
}

}  // namespace

void SmallMatMul(const float* a, int a_stride, int rows, int inner, const float* b, int width,
                 float* c) {
  switch (width) {
    case 8:
      return RowKernel<8>(a, a_stride, rows, inner, b, c);
    case 16:
      return RowKernel<16>(a, a_stride, rows, inner, b, c);
    case 24:
      return RowKernel<24>(a, a_stride, rows, inner, b, c);
    case 32:
      return RowKernel<32>(a, a_stride, rows, inner, b, c);
    case 40:
      return RowKernel<40>(a, a_stride, rows, inner, b, c);
    case 48:
      return RowKernel<48>(a, a_stride, rows, inner, b, c);
    case 56:
      return RowKernel<56>(a, a_stride, rows, inner, b, c);
    case 64:
      return RowKernel<64>(a, a_stride, rows, inner, b, c);
    default:
      return GenericKernel(a, a_stride, rows, inner, b, width, c);
  }
}

}  // namespace fedcl::nn
