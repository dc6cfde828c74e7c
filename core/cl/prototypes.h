// SimpleCIL (algorithms.md §8.1): a training-free classifier over a frozen embedding. Each class
// is the mean of its training features; a sample goes to the class with the largest cosine
// similarity. Classes are added task by task and old prototypes never change, so nothing is
// forgotten by construction.
#ifndef FEDCL_CORE_CL_PROTOTYPES_H_
#define FEDCL_CORE_CL_PROTOTYPES_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/nn/tensor.h"

namespace fedcl::cl {

class PrototypeClassifier {
 public:
  explicit PrototypeClassifier(int dim) : dim_(dim) {}
  // Adds (or, for a class already present, replaces) the prototypes of every label in `labels`
  // from `features` (N × dim). InvalidArgument for a shape mismatch or a negative label.
  absl::Status AddClasses(const nn::Matrix& features, absl::Span<const int32_t> labels);
  // Cosine similarity to every known class (N × classes(), columns in class-id order; classes
  // never added score −2 so they are never chosen).
  absl::StatusOr<nn::Matrix> Similarities(const nn::Matrix& features) const;
  absl::StatusOr<std::vector<int>> Predict(const nn::Matrix& features) const;
  int classes() const { return static_cast<int>(prototypes_.rows()); }

 private:
  int dim_;
  nn::Matrix prototypes_;  // classes × dim, unit rows
  std::vector<bool> known_;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_PROTOTYPES_H_
