// CEMA's sample filters (algorithms.md §6.3), used on the device to choose which unlabelled
// samples label-free adaptation learns from:
//   1. reliability: keep x if its prediction entropy E(x) < E_max = high_margin · ln C
//      (static; 0.4 by default);
//   2. informativeness (optional): keep x only if E(x) > E_min = low_margin · ln C;
//   3. redundancy (EATA): keep x only if |cos(p̄, p(x))| < d (d = 0.05), where p̄ is a moving
//      average of the kept samples' probabilities: p̄ ← 0.9·p̄ + 0.1·mean(kept p). On the first
//      batch p̄ is the mean of the samples that passed 1-2, and they all pass 3.
#ifndef FEDCL_CORE_CL_SAMPLE_FILTER_H_
#define FEDCL_CORE_CL_SAMPLE_FILTER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/nn/tensor.h"

namespace fedcl::cl {

struct SampleFilterOptions {
  double high_margin = 0.4;  // E_max = high_margin · ln C
  double low_margin = 0.0;   // E_min = low_margin · ln C; 0 disables filter 2
  double redundancy = 0.05;  // d; 0 disables filter 3
  double momentum = 0.9;     // of p̄
};

class SampleFilter {
 public:
  explicit SampleFilter(const SampleFilterOptions& options = {}) : options_(options) {}
  // For a batch of logits (N × C): which samples to learn from. Updates p̄.
  absl::StatusOr<std::vector<bool>> Select(const nn::Matrix& logits);
  // Samples seen and kept so far.
  int64_t seen() const { return seen_; }
  int64_t kept() const { return kept_; }
  static std::vector<float> Entropies(const nn::Matrix& probabilities);

 private:
  SampleFilterOptions options_;
  Eigen::RowVectorXf average_;  // p̄, empty before the first batch
  int64_t seen_ = 0, kept_ = 0;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_SAMPLE_FILTER_H_
