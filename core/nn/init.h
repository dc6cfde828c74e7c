// Weight initialisers, matching PyTorch's definitions so that our models and their PyTorch twins
// start from the same distributions (not the same numbers: our generator is our own).
#ifndef FEDCL_CORE_NN_INIT_H_
#define FEDCL_CORE_NN_INIT_H_

#include "core/base/random.h"
#include "core/nn/parameter_set.h"

namespace fedcl::nn {

void InitConstant(const ParamRef& param, float value);
void InitNormal(const ParamRef& param, double mean, double stddev, base::Rng& rng);
void InitUniform(const ParamRef& param, double low, double high, base::Rng& rng);
// Normal(0, stddev) redrawn until within ±2·stddev (timm's trunc_normal_ default).
void InitTruncatedNormal(const ParamRef& param, double stddev, base::Rng& rng);
// Kaiming-normal for ReLU networks: Normal(0, sqrt(2 / fan_in)).
void InitKaimingNormal(const ParamRef& param, int fan_in, base::Rng& rng);
// Kaiming-uniform with negative slope `a`: U(±sqrt(6 / ((1 + a²) · fan_in))). With a = √5 this
// is PyTorch's default Linear/Conv weight init, U(±1/sqrt(fan_in)).
void InitKaimingUniform(const ParamRef& param, int fan_in, base::Rng& rng, double a = 2.2360679775);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_INIT_H_
