// Vocabulary for dense float32 data in the learning core.
//
// Activations are row-major matrices: one row per sample (or per token, for the ViT), one column
// per feature. Convolution stacks use the "channel rows" layout instead: row c holds channel c of
// every image in the batch, image after image ([C, N·H·W]); this turns each convolution into one
// matrix product per chunk of images and makes per-channel ops row operations.
//
// Parameters never live in these matrices: they live in a ParameterSet (parameter_set.h) and are
// viewed through Eigen::Map, so nothing is copied per layer.
#ifndef FEDCL_CORE_NN_TENSOR_H_
#define FEDCL_CORE_NN_TENSOR_H_

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

namespace fedcl::nn {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vector = Eigen::VectorXf;
using RowVector = Eigen::RowVectorXf;

using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;
using VectorMap = Eigen::Map<Vector>;
using ConstVectorMap = Eigen::Map<const Vector>;
using RowVectorMap = Eigen::Map<RowVector>;
using ConstRowVectorMap = Eigen::Map<const RowVector>;

// Views accepted by layer functions: a Matrix, a Map, or a row-major block with an outer stride.
using MatrixRef = Eigen::Ref<Matrix>;
using ConstMatrixRef = Eigen::Ref<const Matrix>;

// Heap buffers of floats that Eigen maps over. Their base is aligned to Eigen's maximum packet
// size: a vectorised reduction over a Map peels elements until the data is aligned, so with a
// malloc-aligned base the summation order (and the last bits of the result) would depend on where
// the allocator put the buffer. A fixed base alignment makes every run with the same seed
// bit-identical.
using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;

// Tensor shape, outermost dimension first (PyTorch order: Linear weight is [out, in]).
using Shape = std::vector<int64_t>;

// Number of elements of a shape (1 for a scalar, i.e. an empty shape).
int64_t NumElements(const Shape& shape);

// "[3, 4]".
std::string ShapeToString(const Shape& shape);

// Resizes `m` to rows × cols. Eigen keeps the allocation when the size is unchanged, so
// calling this every step with the same batch size allocates nothing after the first step.
inline void EnsureShape(Matrix& m, Eigen::Index rows, Eigen::Index cols) {
  if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
}

// out += Σ_r m.row(r). Eigen's colwise().sum() walks a row-major matrix column by column with a
// stride; adding whole rows keeps the loop contiguous and vectorised.
template <typename Out>
void AddColumnSums(ConstMatrixRef m, Out&& out) {
  for (Eigen::Index r = 0; r < m.rows(); ++r) out += m.row(r);
}

// out += Σ_r a.row(r) ⊙ b.row(r), the same for an element-wise product.
template <typename Out>
void AddColumnSumsOfProduct(ConstMatrixRef a, ConstMatrixRef b, Out&& out) {
  for (Eigen::Index r = 0; r < a.rows(); ++r) out += a.row(r).cwiseProduct(b.row(r));
}

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_TENSOR_H_
