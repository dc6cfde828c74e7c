// LAE's accumulation and ensemble (algorithms.md §5.4-5.5), for any parameter-efficient module.
//
// Accumulation: an offline copy P_off of the online module P_on, started as a copy when the
// second task begins and moved after every optimiser step:  v_off ← α·v_off + (1 − α)·v_on.
// After s steps towards a fixed P_on, P_off has moved 1 − α^s of the way. α = 0.9999 is tuned to
// ViT-B's step counts (≈10% per CIFAR-100 task of ~1040 steps); DecayForFraction picks α so that a
// task of `steps` steps moves P_off a chosen fraction instead.
//
// Ensemble: p = max(softmax(f_on), softmax(f_off)) element-wise; the prediction is argmax p and
// its confidence max p.
#ifndef FEDCL_CORE_CL_ACCUMULATION_H_
#define FEDCL_CORE_CL_ACCUMULATION_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::cl {

// α such that α^steps = 1 − fraction: InvalidArgument unless steps >= 1 and fraction in (0, 1).
absl::StatusOr<double> DecayForFraction(double fraction, int64_t steps);

class EmaAccumulator {
 public:
  explicit EmaAccumulator(double decay) : decay_(decay) {}
  // Starts P_off as a copy of `online`.
  void Start(const nn::ParameterSet& online);
  bool started() const { return offline_.num_values() > 0; }
  // One step: offline ← α·offline + (1 − α)·online. InvalidArgument if the layouts differ.
  absl::Status Update(const nn::ParameterSet& online);
  const nn::ParameterSet& offline() const { return offline_; }
  nn::ParameterSet& mutable_offline() { return offline_; }
  double decay() const { return decay_; }

 private:
  double decay_;
  nn::ParameterSet offline_;
};

struct EnsemblePrediction {
  std::vector<int> label;         // argmax of the element-wise max of the two softmaxes
  std::vector<float> confidence;  // that maximum
};

// Both N × C. InvalidArgument if the shapes differ.
absl::StatusOr<EnsemblePrediction> MaxSoftmaxEnsemble(const nn::Matrix& online_logits,
                                                      const nn::Matrix& offline_logits);

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_ACCUMULATION_H_
