#include "core/nn/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fedcl::nn {

int64_t NumElements(const Shape& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string ShapeToString(const Shape& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace fedcl::nn
