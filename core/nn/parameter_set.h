// Named float32 tensors in one contiguous, owned buffer.
//
// A ParameterSet is the unit that is trained, shipped and aggregated: a backbone's weights, one
// PET module, a head. All values sit in one buffer (and all gradients in a second one, same
// layout), so whole-set operations (an aggregator's axpy, a norm for update validation, an
// optimizer step, serialization) run over one flat vector without per-tensor copies:
//
//   nn::ParameterSet ssf("ssf");
//   int scale = ssf.Add("blocks.0.norm1.ssf_scale", {64}, /*trainable=*/true);
//   ssf.values(scale)[0] = 1.0f;
//   float norm = ssf.flat_values().norm();
//   global.flat_values() += weight * delta.flat_values();   // after CheckSameLayout
//
// Each tensor is marked trainable or frozen. Optimizers step only trainable tensors, layers
// accumulate gradients only into trainable tensors, and a frozen tensor's gradient stays zero.
//
// Layers refer to tensors through ParamRef (set + index), never through raw pointers, because
// Add() may move the buffer. Tensors are only added while a model is being built.
//
// Copying a ParameterSet copies values, gradients and flags (a deep copy). Not thread-safe for
// concurrent mutation; concurrent reads are fine.
#ifndef FEDCL_CORE_NN_PARAMETER_SET_H_
#define FEDCL_CORE_NN_PARAMETER_SET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/base/status_macros.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

struct TensorInfo {
  std::string name;
  Shape shape;
  int64_t offset = 0;  // first element, in floats from the start of the set's buffer
  int64_t size = 0;    // number of elements
  bool trainable = true;
};

class ParameterSet {
 public:
  explicit ParameterSet(std::string name = "") : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  // Appends a zero-initialised tensor and returns its index. Tensor names are unique within a set;
  // adding a duplicate name is a programming error (checked).
  int Add(absl::string_view name, const Shape& shape, bool trainable);

  int num_tensors() const { return static_cast<int>(tensors_.size()); }
  const TensorInfo& info(int index) const { return tensors_[index]; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Index of the tensor called `name`, or -1.
  int Find(absl::string_view name) const;

  // Total number of floats, and the number in trainable tensors.
  int64_t num_values() const { return static_cast<int64_t>(values_.size()); }
  int64_t num_trainable_values() const;

  float* values(int index) { return values_.data() + tensors_[index].offset; }
  const float* values(int index) const { return values_.data() + tensors_[index].offset; }
  float* grads(int index) {
    EnsureGradients();
    return grads_.data() + tensors_[index].offset;
  }
  const float* grads(int index) const {
    FEDCL_CHECK(has_gradients()) << "gradients of '" << name_ << "' were dropped";
    return grads_.data() + tensors_[index].offset;
  }

  // One tensor as a flat vector.
  VectorMap vector(int index) { return VectorMap(values(index), tensors_[index].size); }
  ConstVectorMap vector(int index) const {
    return ConstVectorMap(values(index), tensors_[index].size);
  }

  // The whole set as one vector, in tensor order.
  VectorMap flat_values() { return VectorMap(values_.data(), num_values()); }
  ConstVectorMap flat_values() const { return ConstVectorMap(values_.data(), num_values()); }
  VectorMap flat_grads() {
    EnsureGradients();
    return VectorMap(grads_.data(), num_values());
  }
  ConstVectorMap flat_grads() const {
    FEDCL_CHECK(has_gradients()) << "gradients of '" << name_ << "' were dropped";
    return ConstVectorMap(grads_.data(), num_values());
  }

  bool trainable(int index) const { return tensors_[index].trainable; }
  void set_trainable(int index, bool trainable) { tensors_[index].trainable = trainable; }
  void SetAllTrainable(bool trainable);
  bool any_trainable() const;

  void ZeroGrads();

  // Frees the gradient buffer of a set that only holds values (a server's pooled module, a
  // shipped copy): halves its memory and the cost of copying it. The buffer comes back, zeroed,
  // the next time gradients are written (grads(i), flat_grads()); reading gradients through a
  // const set meanwhile is a checked error.
  void DropGradients();
  bool has_gradients() const { return grads_.size() == values_.size(); }

  // OK if `other` has the same tensor names and shapes in the same order (so flat vectors line
  // up element for element); otherwise InvalidArgument naming the first difference.
  absl::Status CheckSameLayout(const ParameterSet& other) const;

 private:
  void EnsureGradients() {
    if (grads_.size() != values_.size()) grads_.assign(values_.size(), 0.0f);
  }
  std::string name_;
  std::vector<TensorInfo> tensors_;
  absl::flat_hash_map<std::string, int> index_by_name_;
  AlignedFloats values_;
  AlignedFloats grads_;
};

// A reference to one tensor of a ParameterSet: what layers hold. Unbound by default.
struct ParamRef {
  ParameterSet* set = nullptr;
  int index = -1;

  bool bound() const { return set != nullptr; }
  bool trainable() const { return set != nullptr && set->trainable(index); }
  float* value() const { return set->values(index); }
  float* grad() const { return set->grads(index); }
  int64_t size() const { return set->info(index).size; }
  const Shape& shape() const { return set->info(index).shape; }

  // Views: a tensor of shape [rows, cols] (or any shape with rows·cols elements) as a matrix.
  MatrixMap matrix(Eigen::Index rows, Eigen::Index cols) const {
    return MatrixMap(value(), rows, cols);
  }
  MatrixMap grad_matrix(Eigen::Index rows, Eigen::Index cols) const {
    return MatrixMap(grad(), rows, cols);
  }
  RowVectorMap row() const { return RowVectorMap(value(), size()); }
  RowVectorMap grad_row() const { return RowVectorMap(grad(), size()); }
};

// Adds a tensor to `set` and returns a reference to it.
inline ParamRef AddParam(ParameterSet& set, absl::string_view name, const Shape& shape,
                         bool trainable) {
  return ParamRef{&set, set.Add(name, shape, trainable)};
}

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_PARAMETER_SET_H_
