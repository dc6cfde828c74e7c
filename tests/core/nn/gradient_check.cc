#include "tests/core/nn/gradient_check.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fedcl::nn::testing {
namespace {

// Which coordinates of an n-element tensor to check.
std::vector<int64_t> SampleCoordinates(int64_t n, const GradCheckOptions& options, base::Rng& rng) {
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  if (n <= options.max_coordinates) return all;
  rng.Shuffle(all);
  all.resize(options.max_coordinates);
  return all;
}

// Checks one flat buffer of `n` values at `values` against `analytic`.
::testing::AssertionResult CheckBuffer(const std::string& what, float* values,
                                       const float* analytic, int64_t n,
                                       const std::function<double()>& loss,
                                       const GradCheckOptions& options, base::Rng& rng) {
  double diff_sq = 0.0, numeric_sq = 0.0, worst = 0.0;
  int64_t worst_index = -1;
  double worst_numeric = 0.0, worst_analytic = 0.0;
  const double center = loss();
  std::vector<int64_t> coordinates = SampleCoordinates(n, options, rng);
  int skipped = 0;
  for (int64_t i : coordinates) {
    const float saved = values[i];
    values[i] = saved + static_cast<float>(options.epsilon);
    const double plus = loss();
    values[i] = saved - static_cast<float>(options.epsilon);
    const double minus = loss();
    values[i] = saved;
    // A ReLU or max-pool kink within ±ε shows as one-sided slopes that disagree; the central
    // difference there is meaningless, so the coordinate is skipped (and counted).
    const double right = (plus - center) / options.epsilon;
    const double left = (center - minus) / options.epsilon;
    if (options.skip_kinks &&
        std::abs(right - left) > 0.05 * (std::abs(right) + std::abs(left)) + 1e-4) {
      ++skipped;
      continue;
    }
    const double numeric = (plus - minus) / (2.0 * options.epsilon);
    const double delta = analytic[i] - numeric;
    diff_sq += delta * delta;
    numeric_sq += numeric * numeric;
    if (std::abs(delta) > worst) {
      worst = std::abs(delta);
      worst_index = i;
      worst_numeric = numeric;
      worst_analytic = analytic[i];
    }
  }
  if (skipped * 4 > static_cast<int>(coordinates.size())) {
    return ::testing::AssertionFailure()
           << what << ": " << skipped << " of " << coordinates.size()
           << " coordinates sit on a kink; the check is not informative";
  }
  const double relative = std::sqrt(diff_sq) / std::max(std::sqrt(numeric_sq), 1e-3);
  if (relative <= options.tolerance) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": relative error " << relative << " > " << options.tolerance
         << "; worst element " << worst_index << " analytic " << worst_analytic << " numeric "
         << worst_numeric;
}

}  // namespace

double Project(ConstMatrixRef m, ConstMatrixRef r) {
  return m.cast<double>().cwiseProduct(r.cast<double>()).sum();
}

Matrix RandomMatrix(Eigen::Index rows, Eigen::Index cols, base::Rng& rng, float lo, float hi) {
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(rng.Uniform(lo, hi));
  return m;
}

void Randomize(ParameterSet& set, base::Rng& rng, float lo, float hi) {
  VectorMap v = set.flat_values();
  for (Eigen::Index i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rng.Uniform(lo, hi));
}

::testing::AssertionResult CheckParameterGradients(const std::vector<ParameterSet*>& sets,
                                                   const std::function<double()>& loss,
                                                   const std::function<void()>& backward,
                                                   const GradCheckOptions& options) {
  backward();
  // Keep a copy: the finite differences below run forward passes only, but be safe.
  std::vector<std::vector<float>> analytic;
  for (ParameterSet* set : sets) {
    analytic.emplace_back(set->flat_grads().data(), set->flat_grads().data() + set->num_values());
  }
  base::Rng rng(options.seed);
  int checked = 0;
  for (size_t s = 0; s < sets.size(); ++s) {
    ParameterSet& set = *sets[s];
    for (int t = 0; t < set.num_tensors(); ++t) {
      const TensorInfo& info = set.info(t);
      if (!info.trainable) continue;
      auto result = CheckBuffer(set.name() + "/" + info.name, set.values(t),
                                analytic[s].data() + info.offset, info.size, loss, options, rng);
      if (!result) return result;
      ++checked;
    }
  }
  if (checked == 0) return ::testing::AssertionFailure() << "no trainable tensor was checked";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult CheckModelGradients(Model& model, const std::vector<ParameterSet*>& sets,
                                               ConstMatrixRef x, ConstMatrixRef r,
                                               const GradCheckOptions& options) {
  auto loss = [&] { return Project(model.Forward(x, /*training=*/false), r); };
  auto backward = [&] {
    model.ZeroGrads();
    model.Forward(x, /*training=*/true);
    model.Backward(r);
  };
  return CheckParameterGradients(sets, loss, backward, options);
}

::testing::AssertionResult CheckInputGradient(Matrix& input, ConstMatrixRef analytic,
                                              const std::function<double()>& loss,
                                              const GradCheckOptions& options) {
  if (analytic.rows() != input.rows() || analytic.cols() != input.cols()) {
    return ::testing::AssertionFailure() << "input gradient has the wrong shape";
  }
  Matrix copy = analytic;
  base::Rng rng(options.seed + 1);
  return CheckBuffer("input", input.data(), copy.data(), input.size(), loss, options, rng);
}

}  // namespace fedcl::nn::testing
