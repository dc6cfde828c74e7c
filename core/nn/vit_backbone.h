// A small vision transformer for 28×28 images (ModelConfig::vit): patches of `patch`×`patch`
// pixels are projected to `dim`, a CLS token and a learned position embedding are added, `depth`
// pre-LN blocks follow, and the final LayerNorm of the CLS token is the feature vector.
//
// Extension points (backbone.h): SSF after the patch projection ("patch_embed.proj"), at the six
// sites of every block (transformer_block.h) and after the final norm ("norm"), as in
// algorithms.md §2.3; LoRA on every block's qkv, proj, fc1 and fc2; an adapter branch per block.
#ifndef FEDCL_CORE_NN_VIT_BACKBONE_H_
#define FEDCL_CORE_NN_VIT_BACKBONE_H_

#include <memory>
#include <vector>

#include "core/nn/backbone.h"
#include "core/nn/layer_norm.h"
#include "core/nn/transformer_block.h"

namespace fedcl::nn {

class VitBackbone final : public Backbone {
 public:
  VitBackbone(const ModelConfig& config, base::Rng& rng);

  BackboneKind kind() const override { return BackboneKind::kVit; }
  int feature_dim() const override { return dim_; }
  const Matrix& Forward(ConstMatrixRef images, bool training) override;
  void Backward(ConstMatrixRef dfeatures) override;

  int tokens() const { return tokens_; }

  // Hooks on the last Forward, for detectors and self-expansion (valid until the next Forward):
  // the CLS token after block i ([batch, dim]) and the mean over all tokens, CLS included, of
  // block i's input ([batch, dim]). The last block runs on CLS rows alone, so its output is CLS.
  Matrix ClsAfterBlock(int i) const;
  Matrix TokenMeanOfBlockInput(int i) const;
  // Every token of block i's input, one sample per row ([batch, tokens·dim], token-major).
  Matrix TokensOfBlockInput(int i) const;
  TransformerBlock& block(int i) { return *blocks_[i]; }
  int depth() const { return static_cast<int>(blocks_.size()); }

 private:
  void EmbedPatches(ConstMatrixRef images, bool training);
  void BackwardPatches(ConstMatrixRef dtokens);
  bool PatchEmbedHasTrainable() const;

  int channels_, height_, width_, patch_, dim_;
  int grid_w_;   // patches per image row
  int patches_;  // patches per image
  int tokens_;   // patches + CLS
  int batch_ = 0;
  Linear patch_proj_;
  SsfSite patch_ssf_;
  ParamRef cls_token_;  // [1, 1, dim]
  ParamRef pos_embed_;  // [1, tokens, dim]
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  LayerNorm norm_;
  SsfSite norm_ssf_;

  Matrix patch_pixels_;  // [batch·patches, C·patch·patch]
  Matrix patch_out_;     // [batch·patches, dim]
  Matrix tokens_in_;     // [batch·tokens, dim]
  Matrix features_;      // [batch, dim]
  Matrix dfeatures_, dtokens_a_, dtokens_b_, dpatch_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_VIT_BACKBONE_H_
