// Finite-difference checks of every layer's hand-written backward pass.
#include <cmath>

#include "core/nn/activations.h"
#include "core/nn/adapter_branch.h"
#include "core/nn/attention.h"
#include "core/nn/conv2d.h"
#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/nn/loss.h"
#include "core/nn/ssf_site.h"
#include "core/nn/transformer_block.h"
#include "gtest/gtest.h"
#include "tests/core/nn/gradient_check.h"

namespace fedcl::nn {
namespace {

using testing::CheckInputGradient;
using testing::CheckParameterGradients;
using testing::Project;
using testing::Randomize;
using testing::RandomMatrix;

class LayerGradientTest : public ::testing::Test {
 protected:
  base::Rng rng_{2024};
};

TEST_F(LayerGradientTest, LinearMatchesFiniteDifferences) {
  ParameterSet params("linear");
  Linear layer(params, "fc", 7, 5);
  Randomize(params, rng_);
  Matrix x = RandomMatrix(4, 7, rng_), r = RandomMatrix(4, 5, rng_), y, dx;
  auto loss = [&] {
    layer.Forward(x, y);
    return Project(y, r);
  };
  auto backward = [&] {
    params.ZeroGrads();
    layer.Forward(x, y);
    layer.Backward(x, r, &dx);
  };
  EXPECT_TRUE(CheckParameterGradients({&params}, loss, backward));
  EXPECT_TRUE(CheckInputGradient(x, dx, loss));
}

TEST_F(LayerGradientTest, LinearWithLoraMatchesFiniteDifferences) {
  ParameterSet base("base"), lora("lora");
  Linear layer(base, "fc", 6, 5);
  ParamRef a = AddParam(lora, "fc.lora_a", {3, 6}, true);
  ParamRef b = AddParam(lora, "fc.lora_b", {5, 3}, true);
  Randomize(base, rng_);
  Randomize(lora, rng_);
  base.SetAllTrainable(false);  // a frozen layer still passes gradients to its LoRA branch
  layer.AttachLora({a, b, 0.75f, 3});
  Matrix x = RandomMatrix(4, 6, rng_), r = RandomMatrix(4, 5, rng_), y, dx;
  auto loss = [&] {
    layer.Forward(x, y);
    return Project(y, r);
  };
  auto backward = [&] {
    lora.ZeroGrads();
    layer.Forward(x, y);
    layer.Backward(x, r, &dx);
  };
  EXPECT_TRUE(CheckParameterGradients({&lora}, loss, backward));
  EXPECT_TRUE(CheckInputGradient(x, dx, loss));
  EXPECT_EQ(base.flat_grads().squaredNorm(), 0.0f) << "frozen weights must get no gradient";
}

TEST_F(LayerGradientTest, Conv2dMatchesFiniteDifferences) {
  struct Case {
    int kernel, stride, padding;
  };
  for (Case c : {Case{3, 1, 1}, Case{3, 2, 1}, Case{2, 1, 0}}) {
    ParameterSet params("conv");
    Conv2d conv(params, "conv", 2, 3, c.kernel, c.stride, c.padding);
    Randomize(params, rng_);
    const int batch = 2;
    ConvGeometry in{2, 5, 6};
    ConvGeometry out = conv.OutputGeometry(in);
    Matrix x = RandomMatrix(2, batch * 5 * 6, rng_);
    Matrix r = RandomMatrix(3, batch * out.height * out.width, rng_), y, dx;
    auto loss = [&] {
      conv.Forward(x, batch, in, y);
      return Project(y, r);
    };
    auto backward = [&] {
      params.ZeroGrads();
      conv.Forward(x, batch, in, y);
      conv.Backward(x, r, batch, in, &dx);
    };
    EXPECT_TRUE(CheckParameterGradients({&params}, loss, backward)) << "kernel " << c.kernel;
    EXPECT_TRUE(CheckInputGradient(x, dx, loss)) << "kernel " << c.kernel;
  }
}

TEST_F(LayerGradientTest, Conv2dMatchesDirectConvolution) {
  ParameterSet params("conv");
  Conv2d conv(params, "conv", 2, 3, 3, 1, 1);
  Randomize(params, rng_);
  ConvGeometry in{2, 4, 5};
  const int batch = 3;
  Matrix x = RandomMatrix(2, batch * 20, rng_), y;
  conv.Forward(x, batch, in, y);
  const float* w = conv.weight().value();
  const float* b = conv.bias().value();
  for (int n = 0; n < batch; ++n) {
    for (int o = 0; o < 3; ++o) {
      for (int i = 0; i < 4; ++i) {
        for (int j = 0; j < 5; ++j) {
          double sum = b[o];
          for (int c = 0; c < 2; ++c) {
            for (int ky = 0; ky < 3; ++ky) {
              for (int kx = 0; kx < 3; ++kx) {
                int yy = i + ky - 1, xx = j + kx - 1;
                if (yy < 0 || yy >= 4 || xx < 0 || xx >= 5) continue;
                sum += w[((o * 2 + c) * 3 + ky) * 3 + kx] * x(c, n * 20 + yy * 5 + xx);
              }
            }
          }
          EXPECT_NEAR(y(o, n * 20 + i * 5 + j), sum, 1e-5);
        }
      }
    }
  }
}

TEST_F(LayerGradientTest, MaxPoolRoutesGradientToTheMaximum) {
  ConvGeometry in{2, 4, 6};
  const int batch = 2;
  // Distinct values, spaced far wider than the finite-difference step.
  Matrix x(2, batch * 24);
  std::vector<int> order(x.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  rng_.Shuffle(order);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = 0.1f * order[i];
  MaxPool2d pool(2);
  Matrix r = RandomMatrix(2, batch * 6, rng_), y, dx;
  auto loss = [&] {
    pool.Forward(x, batch, in, y);
    return Project(y, r);
  };
  pool.Forward(x, batch, in, y);
  pool.Backward(r, batch, in, dx);
  EXPECT_TRUE(CheckInputGradient(x, dx, loss));
}

TEST_F(LayerGradientTest, ReluAndGeluMatchFiniteDifferences) {
  Matrix x = RandomMatrix(5, 8, rng_, -2.0f, 2.0f);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    if (std::abs(x.data()[i]) < 0.1f) x.data()[i] = 0.5f;  // keep ReLU away from its kink
  }
  Matrix r = RandomMatrix(5, 8, rng_), y, dx;
  auto relu_loss = [&] {
    y = x;
    ReluForward(y);
    return Project(y, r);
  };
  relu_loss();
  dx = r;
  ReluBackward(y, dx);
  EXPECT_TRUE(CheckInputGradient(x, dx, relu_loss));

  auto gelu_loss = [&] {
    GeluForward(x, y);
    return Project(y, r);
  };
  dx = r;
  GeluBackward(x, dx);
  EXPECT_TRUE(CheckInputGradient(x, dx, gelu_loss));
}

TEST_F(LayerGradientTest, GeluMatchesTheErfDefinition) {
  Matrix x = RandomMatrix(3, 50, rng_, -5.0f, 5.0f), y;
  GeluForward(x, y);
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    double v = x.data()[i];
    EXPECT_NEAR(y.data()[i], 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))), 2e-6);
  }
}

TEST_F(LayerGradientTest, LayerNormMatchesFiniteDifferences) {
  ParameterSet params("ln");
  LayerNorm norm(params, "ln", 9);
  Randomize(params, rng_, 0.5f, 1.5f);
  Matrix x = RandomMatrix(4, 9, rng_, -2.0f, 2.0f), r = RandomMatrix(4, 9, rng_), y, dx;
  auto loss = [&] {
    norm.Forward(x, y);
    return Project(y, r);
  };
  auto backward = [&] {
    params.ZeroGrads();
    norm.Forward(x, y);
    norm.Backward(r, &dx);
  };
  EXPECT_TRUE(CheckParameterGradients({&params}, loss, backward));
  EXPECT_TRUE(CheckInputGradient(x, dx, loss));
}

TEST_F(LayerGradientTest, SoftmaxCrossEntropyMatchesFiniteDifferences) {
  Matrix logits = RandomMatrix(6, 5, rng_, -3.0f, 3.0f), dlogits;
  std::vector<int32_t> labels = {0, 4, 2, 2, 1, 3};
  SoftmaxCrossEntropy(logits, labels, &dlogits);
  auto loss = [&] { return static_cast<double>(SoftmaxCrossEntropy(logits, labels, nullptr)); };
  testing::GradCheckOptions options;
  options.epsilon = 1e-2;
  EXPECT_TRUE(CheckInputGradient(logits, dlogits, loss, options));
  // And the value itself: −log softmax of the labelled entry, averaged.
  double expected = 0.0;
  for (int r = 0; r < 6; ++r) {
    double norm = 0.0;
    for (int c = 0; c < 5; ++c) norm += std::exp(static_cast<double>(logits(r, c)));
    expected += std::log(norm) - logits(r, labels[r]);
  }
  EXPECT_NEAR(loss(), expected / 6, 1e-5);
}

TEST_F(LayerGradientTest, MultiHeadAttentionMatchesFiniteDifferences) {
  const int batch = 2, tokens = 5, dim = 8, heads = 2;
  MultiHeadAttention attention(dim, heads);
  Matrix qkv = RandomMatrix(batch * tokens, 3 * dim, rng_),
         r = RandomMatrix(batch * tokens, dim, rng_);
  Matrix out, dqkv;
  auto loss = [&] {
    attention.Forward(qkv, batch, tokens, /*cls_only=*/false, out);
    return Project(out, r);
  };
  loss();
  attention.Backward(qkv, r, batch, tokens, dqkv);
  testing::GradCheckOptions options;
  options.max_coordinates = 240;
  EXPECT_TRUE(CheckInputGradient(qkv, dqkv, loss, options));
}

TEST_F(LayerGradientTest, ClsOnlyAttentionMatchesFiniteDifferencesAndTheFullCls) {
  const int batch = 3, tokens = 5, dim = 8, heads = 2;
  MultiHeadAttention attention(dim, heads);
  Matrix qkv = RandomMatrix(batch * tokens, 3 * dim, rng_), r = RandomMatrix(batch, dim, rng_);
  Matrix out, full, dqkv;
  attention.Forward(qkv, batch, tokens, /*cls_only=*/false, full);
  attention.Forward(qkv, batch, tokens, /*cls_only=*/true, out);
  for (int b = 0; b < batch; ++b) {
    EXPECT_TRUE(out.row(b).isApprox(full.row(b * tokens), 1e-6f)) << "sample " << b;
  }
  auto loss = [&] {
    attention.Forward(qkv, batch, tokens, true, out);
    return Project(out, r);
  };
  loss();
  attention.Backward(qkv, r, batch, tokens, dqkv);
  testing::GradCheckOptions options;
  options.max_coordinates = 360;
  EXPECT_TRUE(CheckInputGradient(qkv, dqkv, loss, options));
}

TEST_F(LayerGradientTest, MultiHeadAttentionMatchesNaiveSoftmaxAttention) {
  const int batch = 1, tokens = 3, dim = 4, heads = 2;
  MultiHeadAttention attention(dim, heads);
  Matrix qkv = RandomMatrix(batch * tokens, 3 * dim, rng_), out;
  attention.Forward(qkv, batch, tokens, /*cls_only=*/false, out);
  for (int h = 0; h < heads; ++h) {
    for (int t = 0; t < tokens; ++t) {
      std::vector<double> weights(tokens);
      double total = 0.0;
      for (int s = 0; s < tokens; ++s) {
        double dot = 0.0;
        for (int j = 0; j < 2; ++j) dot += qkv(t, h * 2 + j) * qkv(s, dim + h * 2 + j);
        weights[s] = std::exp(dot / std::sqrt(2.0));
        total += weights[s];
      }
      for (int j = 0; j < 2; ++j) {
        double value = 0.0;
        for (int s = 0; s < tokens; ++s) value += weights[s] / total * qkv(s, 2 * dim + h * 2 + j);
        EXPECT_NEAR(out(t, h * 2 + j), value, 1e-5);
      }
    }
  }
}

TEST_F(LayerGradientTest, SsfSiteMatchesFiniteDifferencesOnBothLayouts) {
  for (ChannelAxis axis : {ChannelAxis::kColumns, ChannelAxis::kRows}) {
    ParameterSet params("ssf");
    ParamRef scale = AddParam(params, "s.ssf_scale", {4}, true);
    ParamRef shift = AddParam(params, "s.ssf_shift", {4}, true);
    Randomize(params, rng_);
    SsfSite site("s", 4, axis, nullptr);
    site.Bind(scale, shift);
    Matrix x = axis == ChannelAxis::kColumns ? RandomMatrix(6, 4, rng_) : RandomMatrix(4, 6, rng_);
    Matrix r = RandomMatrix(x.rows(), x.cols(), rng_), y, dx;
    auto loss = [&] {
      y = x;
      site.Forward(y, false);
      return Project(y, r);
    };
    auto backward = [&] {
      params.ZeroGrads();
      y = x;
      site.Forward(y, true);
      dx = r;
      site.Backward(dx);
    };
    EXPECT_TRUE(CheckParameterGradients({&params}, loss, backward));
    EXPECT_TRUE(CheckInputGradient(x, dx, loss));
  }
}

TEST_F(LayerGradientTest, AdapterBranchMatchesFiniteDifferences) {
  ParameterSet params("adapter");
  AdapterBinding binding{
      AddParam(params, "a.down.weight", {3, 6}, true), AddParam(params, "a.down.bias", {3}, true),
      AddParam(params, "a.up.weight", {6, 3}, true), AddParam(params, "a.up.bias", {6}, true), 3};
  Randomize(params, rng_);
  AdapterBranch branch("a", 6);
  branch.Bind(binding);
  Matrix x = RandomMatrix(5, 6, rng_), r = RandomMatrix(5, 6, rng_), y, dx;
  auto loss = [&] {
    y.setZero(5, 6);
    branch.ForwardAdd(x, y);
    return Project(y, r);
  };
  auto backward = [&] {
    params.ZeroGrads();
    y.setZero(5, 6);
    branch.ForwardAdd(x, y);
    dx.setZero(5, 6);
    branch.Backward(x, r, &dx);
  };
  EXPECT_TRUE(CheckParameterGradients({&params}, loss, backward));
  EXPECT_TRUE(CheckInputGradient(x, dx, loss));
}

}  // namespace
}  // namespace fedcl::nn

namespace fedcl::nn {
namespace {

// The last ViT block computes CLS rows only; it must equal the full block on those rows, and its
// gradients (parameters and input) must match finite differences.
TEST(TransformerBlockTest, ClsOnlyBlockIsExactlyTheFullBlockOnClsRows) {
  base::Rng rng(31);
  ParameterSet params("block");
  TransformerBlock block(params, "blocks.0", 8, 2, 16);
  testing::Randomize(params, rng);
  const int batch = 2, tokens = 5;
  Matrix x = RandomMatrix(batch * tokens, 8, rng), r = RandomMatrix(batch, 8, rng), dx;
  Matrix full = block.Forward(x, batch, tokens, false, /*cls_only=*/false);
  Matrix cls = block.Forward(x, batch, tokens, false, /*cls_only=*/true);
  ASSERT_EQ(cls.rows(), batch);
  for (int b = 0; b < batch; ++b) EXPECT_TRUE(cls.row(b).isApprox(full.row(b * tokens), 1e-5f));
  auto loss = [&] { return Project(block.Forward(x, batch, tokens, false, true), r); };
  auto backward = [&] {
    params.ZeroGrads();
    block.Forward(x, batch, tokens, true, true);
    block.Backward(r, batch, tokens, &dx);
  };
  EXPECT_TRUE(CheckParameterGradients({&params}, loss, backward));
  EXPECT_TRUE(CheckInputGradient(x, dx, loss));
}

}  // namespace
}  // namespace fedcl::nn
