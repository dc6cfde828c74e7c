#include "core/nn/init.h"

#include <cmath>

namespace fedcl::nn {

void InitConstant(const ParamRef& param, float value) {
  std::fill(param.value(), param.value() + param.size(), value);
}

void InitNormal(const ParamRef& param, double mean, double stddev, base::Rng& rng) {
  float* v = param.value();
  for (int64_t i = 0; i < param.size(); ++i) v[i] = static_cast<float>(rng.Normal(mean, stddev));
}

void InitUniform(const ParamRef& param, double low, double high, base::Rng& rng) {
  float* v = param.value();
  for (int64_t i = 0; i < param.size(); ++i) v[i] = static_cast<float>(rng.Uniform(low, high));
}

void InitTruncatedNormal(const ParamRef& param, double stddev, base::Rng& rng) {
  float* v = param.value();
  for (int64_t i = 0; i < param.size(); ++i) {
    double x;
    do {
      x = rng.Normal();
    } while (std::abs(x) > 2.0);
    v[i] = static_cast<float>(x * stddev);
  }
}

void InitKaimingNormal(const ParamRef& param, int fan_in, base::Rng& rng) {
  InitNormal(param, 0.0, std::sqrt(2.0 / fan_in), rng);
}

void InitKaimingUniform(const ParamRef& param, int fan_in, base::Rng& rng, double a) {
  double bound = std::sqrt(6.0 / ((1.0 + a * a) * fan_in));
  InitUniform(param, -bound, bound, rng);
}

}  // namespace fedcl::nn
