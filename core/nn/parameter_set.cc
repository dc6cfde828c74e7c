#include "core/nn/parameter_set.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::nn {

int ParameterSet::Add(absl::string_view name, const Shape& shape, bool trainable) {
  FEDCL_CHECK(index_by_name_.find(name) == index_by_name_.end())
      << "duplicate tensor '" << name << "' in parameter set '" << name_ << "'";
  for (int64_t dim : shape) FEDCL_CHECK(dim > 0) << "tensor '" << name << "' has a zero dimension";
  TensorInfo info;
  info.name = std::string(name);
  info.shape = shape;
  info.offset = num_values();
  info.size = NumElements(shape);
  info.trainable = trainable;
  values_.resize(values_.size() + info.size, 0.0f);
  grads_.resize(values_.size(), 0.0f);
  int index = num_tensors();
  index_by_name_.emplace(info.name, index);
  tensors_.push_back(std::move(info));
  return index;
}

int ParameterSet::Find(absl::string_view name) const {
  auto it = index_by_name_.find(name);
  return it == index_by_name_.end() ? -1 : it->second;
}

int64_t ParameterSet::num_trainable_values() const {
  int64_t count = 0;
  for (const TensorInfo& info : tensors_) {
    if (info.trainable) count += info.size;
  }
  return count;
}

void ParameterSet::SetAllTrainable(bool trainable) {
  for (TensorInfo& info : tensors_) info.trainable = trainable;
}

bool ParameterSet::any_trainable() const {
  return std::any_of(tensors_.begin(), tensors_.end(),
                     [](const TensorInfo& info) { return info.trainable; });
}

void ParameterSet::ZeroGrads() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void ParameterSet::DropGradients() {
  grads_.clear();
  grads_.shrink_to_fit();
}

absl::Status ParameterSet::CheckSameLayout(const ParameterSet& other) const {
  if (num_tensors() != other.num_tensors()) {
    return absl::InvalidArgumentError(absl::StrCat("parameter set '", other.name(), "' has ",
                                                   other.num_tensors(), " tensors, expected ",
                                                   num_tensors(), " as in '", name_, "'"));
  }
  for (int i = 0; i < num_tensors(); ++i) {
    const TensorInfo& mine = tensors_[i];
    const TensorInfo& theirs = other.info(i);
    if (mine.name != theirs.name) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, " of '", other.name(), "' is '",
                                                     theirs.name, "', expected '", mine.name, "'"));
    }
    if (mine.shape != theirs.shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", mine.name, "' of '", other.name(),
                                                     "' has shape ", ShapeToString(theirs.shape),
                                                     ", expected ", ShapeToString(mine.shape)));
    }
  }
  return absl::OkStatus();
}

}  // namespace fedcl::nn
