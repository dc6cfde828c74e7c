// Element-wise activations with hand-written backward passes.
#ifndef FEDCL_CORE_NN_ACTIVATIONS_H_
#define FEDCL_CORE_NN_ACTIVATIONS_H_

#include "core/nn/tensor.h"

namespace fedcl::nn {

// x ← max(x, 0) in place.
void ReluForward(MatrixRef x);
// dy ← dy ⊙ 1[y > 0], where y is ReLU's output (y > 0 exactly where the input was > 0).
void ReluBackward(ConstMatrixRef y, MatrixRef dy);

// y ← GELU(x) = x·Φ(x), the exact (erf) form, as PyTorch's nn.GELU() default and ViT use.
// If `cdf` is given it receives Φ(x), which GeluBackward can reuse instead of recomputing erf.
void GeluForward(ConstMatrixRef x, Matrix& y, Matrix* cdf = nullptr);
// dy ← dy ⊙ GELU'(x), with GELU'(x) = Φ(x) + x·φ(x). `cdf` is Φ(x) from GeluForward, or null.
void GeluBackward(ConstMatrixRef x, MatrixRef dy, const Matrix* cdf = nullptr);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_ACTIVATIONS_H_
