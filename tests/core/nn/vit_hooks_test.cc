// The ViT's hooks for detectors: the CLS token after each block and the token mean of each
// block's input.
#include "core/base/random.h"
#include "core/nn/layer_norm.h"
#include "core/nn/model.h"
#include "core/nn/vit_backbone.h"
#include "gtest/gtest.h"

namespace fedcl::nn {
namespace {

TEST(VitHooksTest, HooksAreThePerSampleRowsOfTheForwardPass) {
  ModelConfig config;
  config.backbone = BackboneKind::kVit;
  auto model = *Model::Create(config, 3);
  auto& vit = static_cast<VitBackbone&>(model->backbone());
  base::Rng rng(4);
  Matrix images(3, 784);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 784; ++j) images(i, j) = static_cast<float>(rng.Normal());
  model->Forward(images, false);
  const Matrix features = model->features();
  std::vector<Matrix> cls, means;
  for (int b = 0; b < vit.depth(); ++b) {
    cls.push_back(vit.ClsAfterBlock(b));
    means.push_back(vit.TokenMeanOfBlockInput(b));
    ASSERT_EQ(cls.back().rows(), 3);
    ASSERT_EQ(means.back().cols(), 64);
  }
  // Block b + 1's input is block b's output: its token mean includes block b's CLS row.
  for (int b = 0; b + 1 < vit.depth(); ++b) {
    const Matrix& out = vit.block(b).output();
    for (int s = 0; s < 3; ++s) {
      EXPECT_TRUE(cls[b].row(s).isApprox(out.row(static_cast<int64_t>(s) * vit.tokens())));
      EXPECT_TRUE(means[b + 1].row(s).isApprox(
          out.middleRows(static_cast<int64_t>(s) * vit.tokens(), vit.tokens()).colwise().mean()));
    }
  }
  // The features are the final LayerNorm (eps 1e-5, weight 1, bias 0) of the last block's CLS
  // output (no SSF attached).
  for (int s = 0; s < 3; ++s) {
    const Eigen::RowVectorXf x = cls.back().row(s);
    const float mean = x.mean();
    const float var = (x.array() - mean).square().mean();
    const Eigen::RowVectorXf normalised = (x.array() - mean) / std::sqrt(var + 1e-5f);
    EXPECT_TRUE(features.row(s).isApprox(normalised, 1e-4f)) << "sample " << s;
  }
  // A sample's hooks do not depend on the rest of its batch.
  model->Forward(images.middleRows(1, 1), false);
  EXPECT_TRUE(vit.ClsAfterBlock(1).row(0).isApprox(cls[1].row(1)));
  EXPECT_TRUE(vit.TokenMeanOfBlockInput(2).row(0).isApprox(means[2].row(1)));
}

}  // namespace
}  // namespace fedcl::nn
