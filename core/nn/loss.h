// Losses: each returns the mean loss over the batch and writes its gradient w.r.t. the logits.
#ifndef FEDCL_CORE_NN_LOSS_H_
#define FEDCL_CORE_NN_LOSS_H_

#include <cstdint>

#include "absl/types/span.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

// Mean softmax cross-entropy of `logits` [n, C] against `labels` (each in [0, C)). Writes
// dlogits = (softmax − onehot)/n unless null. Numerically stable (log-sum-exp with the row max).
float SoftmaxCrossEntropy(ConstMatrixRef logits, absl::Span<const int32_t> labels, Matrix* dlogits);

// Row-wise softmax into `probs`.
void Softmax(ConstMatrixRef logits, Matrix& probs);

// Index of the largest entry of each row.
void ArgmaxRows(ConstMatrixRef m, std::vector<int32_t>& out);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_LOSS_H_
