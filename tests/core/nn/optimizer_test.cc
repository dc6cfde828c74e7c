#include "core/nn/optimizer.h"

#include <cmath>

#include "gtest/gtest.h"

namespace fedcl::nn {
namespace {

// One tensor with value w and gradient g, plus a frozen neighbour.
struct Fixture {
  ParameterSet set{"p"};
  int trainable = set.Add("w", {2}, true);
  int frozen = set.Add("f", {1}, false);
  Fixture() {
    set.values(trainable)[0] = 1.0f;
    set.values(trainable)[1] = -2.0f;
    set.values(frozen)[0] = 5.0f;
  }
  void SetGrad(float a, float b) {
    set.grads(trainable)[0] = a;
    set.grads(trainable)[1] = b;
    set.grads(frozen)[0] = 100.0f;
  }
};

TEST(SgdTest, MomentumAndWeightDecayFollowPyTorch) {
  Fixture f;
  Sgd sgd({.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f});
  // Step 1: g = grad + wd·w = 0.5 + 0.01 = 0.51; b = g; w = 1 − 0.1·0.51.
  f.SetGrad(0.5f, 0.0f);
  sgd.Step({&f.set});
  EXPECT_NEAR(f.set.values(f.trainable)[0], 1.0 - 0.051, 1e-6);
  // Step 2: g = 0.5 + 0.01·0.949 = 0.50949; b = 0.9·0.51 + 0.50949 = 0.96849.
  sgd.Step({&f.set});
  EXPECT_NEAR(f.set.values(f.trainable)[0], 0.949 - 0.1 * 0.96849, 1e-6);
  EXPECT_EQ(f.set.values(f.frozen)[0], 5.0f) << "frozen tensors never move";
}

TEST(AdamWTest, FirstStepsFollowPyTorch) {
  Fixture f;
  AdamW adamw({.learning_rate = 0.01f,
               .beta1 = 0.9f,
               .beta2 = 0.999f,
               .epsilon = 1e-8f,
               .weight_decay = 0.1f});
  f.SetGrad(0.3f, -0.2f);
  adamw.Step({&f.set});
  // With bias correction the first step moves each weight by lr·sign(g) (after decay).
  EXPECT_NEAR(f.set.values(f.trainable)[0], 1.0 * (1 - 0.001) - 0.01, 1e-6);
  EXPECT_NEAR(f.set.values(f.trainable)[1], -2.0 * (1 - 0.001) + 0.01, 1e-6);
  // Second step, reference computed by hand with the PyTorch formulas.
  f.SetGrad(0.1f, -0.2f);
  adamw.Step({&f.set});
  double w = 1.0 * (1 - 0.001) - 0.01;
  double m = 0.9 * 0.03 + 0.1 * 0.1, v = 0.999 * 0.00009 + 0.001 * 0.01;
  double mhat = m / (1 - 0.81), vhat = v / (1 - 0.999 * 0.999);
  w = w * (1 - 0.001) - 0.01 * mhat / (std::sqrt(vhat) + 1e-8);
  EXPECT_NEAR(f.set.values(f.trainable)[0], w, 1e-6);
  EXPECT_EQ(f.set.values(f.frozen)[0], 5.0f);
}

TEST(ClipGradNormTest, ScalesOnlyTrainableGradientsToTheLimit) {
  Fixture f;
  f.SetGrad(3.0f, 4.0f);
  EXPECT_NEAR(ClipGradNorm({&f.set}, 1.0f), 5.0f, 1e-6);
  EXPECT_NEAR(f.set.grads(f.trainable)[0], 0.6f, 1e-5);
  EXPECT_NEAR(f.set.grads(f.trainable)[1], 0.8f, 1e-5);
  EXPECT_EQ(f.set.grads(f.frozen)[0], 100.0f);
  EXPECT_NEAR(ClipGradNorm({&f.set}, 10.0f), 1.0f, 1e-4) << "under the limit: untouched";
}

TEST(OptimizerOptionsTest, BadValuesAreRejected) {
  EXPECT_FALSE(SgdOptions{.learning_rate = 0.0f}.Validate().ok());
  EXPECT_FALSE(SgdOptions{.momentum = 1.0f}.Validate().ok());
  EXPECT_FALSE(SgdOptions{.nesterov = true}.Validate().ok());
  EXPECT_FALSE(AdamWOptions{.beta2 = 1.5f}.Validate().ok());
  EXPECT_TRUE(AdamWOptions{}.Validate().ok());
}

}  // namespace
}  // namespace fedcl::nn
