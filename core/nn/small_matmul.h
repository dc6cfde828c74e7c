// Products of tiny dense matrices, for attention's per-(sample, head) blocks (17×16 by default).
//
// At that size a general matrix product spends more time packing than multiplying, and a
// coefficient-wise product reduces horizontally for every entry. SmallMatMul keeps each output
// row in registers: the output width N is a compile-time constant (rounded up to a multiple of 8
// by the caller, which pads its buffers), so the compiler unrolls and vectorises the row.
#ifndef FEDCL_CORE_NN_SMALL_MATMUL_H_
#define FEDCL_CORE_NN_SMALL_MATMUL_H_

namespace fedcl::nn {

// Rounds n up to the padding unit of SmallMatMul's output width.
constexpr int PadWidth(int n) { return (n + 7) / 8 * 8; }

// c[r, 0..width) = Σ_k a[r·a_stride + k] · b[k·width + 0..width) for r < rows, k < inner.
// `width` must be a multiple of 8 (PadWidth); b is dense [inner, width]; c rows are `width` apart.
void SmallMatMul(const float* a, int a_stride, int rows, int inner, const float* b, int width,
                 float* c);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_SMALL_MATMUL_H_
