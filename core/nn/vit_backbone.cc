#include "core/nn/vit_backbone.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/init.h"

namespace fedcl::nn {

VitBackbone::VitBackbone(const ModelConfig& config, base::Rng& rng)
    : Backbone("backbone"),
      channels_(config.image_channels),
      height_(config.image_height),
      width_(config.image_width),
      patch_(config.vit.patch),
      dim_(config.vit.dim),
      grid_w_(config.image_width / config.vit.patch),
      patches_((config.image_height / config.vit.patch) * grid_w_),
      tokens_(patches_ + 1),
      patch_proj_(params_, "patch_embed.proj", channels_ * patch_ * patch_, dim_),
      patch_ssf_("patch_embed.proj", dim_, ChannelAxis::kColumns, &patch_proj_),
      norm_(params_, "norm", config.vit.dim),
      norm_ssf_("norm", dim_, ChannelAxis::kColumns, &norm_) {
  cls_token_ = AddParam(params_, "cls_token", {1, 1, dim_}, true);
  pos_embed_ = AddParam(params_, "pos_embed", {1, tokens_, dim_}, true);
  for (int i = 0; i < config.vit.depth; ++i) {
    blocks_.push_back(std::make_unique<TransformerBlock>(
        params_, absl::StrCat("blocks.", i), dim_, config.vit.heads, config.vit.mlp_ratio * dim_));
  }
  // timm's init: patch projection keeps the conv default, position embedding trunc-normal(0.02),
  // CLS token normal(1e-6).
  patch_proj_.InitDefault(rng);
  InitTruncatedNormal(pos_embed_, 0.02, rng);
  InitNormal(cls_token_, 0.0, 1e-6, rng);
  for (auto& block : blocks_) block->Init(rng);

  ssf_sites_.push_back(&patch_ssf_);
  for (auto& b : blocks_) {
    for (SsfSite* site :
         {&b->norm1_ssf, &b->qkv_ssf, &b->proj_ssf, &b->norm2_ssf, &b->fc1_ssf, &b->fc2_ssf}) {
      ssf_sites_.push_back(site);
    }
    for (Linear* linear : {&b->qkv, &b->proj, &b->fc1, &b->fc2}) lora_targets_.push_back(linear);
    adapter_sites_.push_back(&b->adapter);
  }
  ssf_sites_.push_back(&norm_ssf_);
}

void VitBackbone::EmbedPatches(ConstMatrixRef images, bool training) {
  // Unfold each image into patches, pixel order (channel, row, column) within a patch: the
  // layout of a [dim, C, patch, patch] convolution kernel.
  const int patch_len = channels_ * patch_ * patch_;
  EnsureShape(patch_pixels_, int64_t{batch_} * patches_, patch_len);
  for (int b = 0; b < batch_; ++b) {
    const float* image = images.row(b).data();
    for (int p = 0; p < patches_; ++p) {
      float* dst = patch_pixels_.row(int64_t{b} * patches_ + p).data();
      const int top = (p / grid_w_) * patch_;
      const int left = (p % grid_w_) * patch_;
      for (int c = 0; c < channels_; ++c) {
        for (int y = 0; y < patch_; ++y) {
          const float* src = image + (int64_t{c} * height_ + top + y) * width_ + left;
          std::copy(src, src + patch_, dst);
          dst += patch_;
        }
      }
    }
  }
  patch_proj_.Forward(patch_pixels_, patch_out_);
  patch_ssf_.Forward(patch_out_, training);
  EnsureShape(tokens_in_, int64_t{batch_} * tokens_, dim_);
  auto pos = pos_embed_.matrix(tokens_, dim_);
  auto cls = cls_token_.row();
  for (int b = 0; b < batch_; ++b) {
    auto rows = tokens_in_.middleRows(int64_t{b} * tokens_, tokens_);
    rows.row(0) = cls + pos.row(0);
    rows.bottomRows(patches_) =
        patch_out_.middleRows(int64_t{b} * patches_, patches_) + pos.bottomRows(patches_);
  }
}

const Matrix& VitBackbone::Forward(ConstMatrixRef images, bool training) {
  FEDCL_CHECK(images.cols() == int64_t{channels_} * height_ * width_) << "ViT input width";
  batch_ = static_cast<int>(images.rows());
  EmbedPatches(images, training);
  // Only the CLS token feeds the head, so the last block and the final norm compute CLS rows
  // alone (exactly the rows a full pass would give them).
  const Matrix* x = &tokens_in_;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const bool last = i + 1 == blocks_.size();
    x = &blocks_[i]->Forward(*x, batch_, tokens_, training, /*cls_only=*/last);
  }
  norm_.Forward(*x, features_);
  norm_ssf_.Forward(features_, training);
  return features_;
}

Matrix VitBackbone::ClsAfterBlock(int i) const {
  const Matrix& out = blocks_[i]->output();
  if (blocks_[i]->last_was_cls_only()) return out;
  Matrix cls(batch_, dim_);
  for (int b = 0; b < batch_; ++b) cls.row(b) = out.row(static_cast<int64_t>(b) * tokens_);
  return cls;
}

Matrix VitBackbone::TokenMeanOfBlockInput(int i) const {
  const Matrix& in = i == 0 ? tokens_in_ : blocks_[i - 1]->output();
  Matrix mean(batch_, dim_);
  for (int b = 0; b < batch_; ++b) {
    mean.row(b) = in.middleRows(static_cast<int64_t>(b) * tokens_, tokens_).colwise().mean();
  }
  return mean;
}

Matrix VitBackbone::TokensOfBlockInput(int i) const {
  const Matrix& in = i == 0 ? tokens_in_ : blocks_[i - 1]->output();
  // Row-major [batch·tokens, dim] is already [batch, tokens·dim] in memory.
  return Eigen::Map<const Matrix>(in.data(), batch_, static_cast<int64_t>(tokens_) * dim_);
}

bool VitBackbone::PatchEmbedHasTrainable() const {
  return patch_proj_.HasTrainable() || patch_ssf_.HasTrainable() || cls_token_.trainable() ||
         pos_embed_.trainable();
}

void VitBackbone::Backward(ConstMatrixRef dfeatures) {
  // need_before[i]: is anything trainable before block i (so its input gradient is needed)?
  std::vector<bool> need_before(blocks_.size() + 1);
  bool trainable_so_far = PatchEmbedHasTrainable();
  for (size_t i = 0; i < blocks_.size(); ++i) {
    need_before[i] = trainable_so_far;
    trainable_so_far = trainable_so_far || blocks_[i]->HasTrainable();
  }
  need_before[blocks_.size()] = trainable_so_far;

  dfeatures_ = dfeatures;
  norm_ssf_.Backward(dfeatures_);
  if (!need_before[blocks_.size()]) {
    norm_.Backward(dfeatures_, nullptr);
    return;
  }
  norm_.Backward(dfeatures_, &dtokens_a_);  // [batch, dim]: the last block returned CLS rows only
  Matrix* dcur = &dtokens_a_;
  Matrix* dprev = &dtokens_b_;
  for (int i = static_cast<int>(blocks_.size()) - 1; i >= 0; --i) {
    blocks_[i]->Backward(*dcur, batch_, tokens_, need_before[i] ? dprev : nullptr);
    if (!need_before[i]) return;
    std::swap(dcur, dprev);
  }
  BackwardPatches(*dcur);
}

void VitBackbone::BackwardPatches(ConstMatrixRef dtokens) {
  if (pos_embed_.trainable() || cls_token_.trainable()) {
    auto dpos = pos_embed_.grad_matrix(tokens_, dim_);
    auto dcls = cls_token_.grad_row();
    for (int b = 0; b < batch_; ++b) {
      auto rows = dtokens.middleRows(int64_t{b} * tokens_, tokens_);
      if (pos_embed_.trainable()) dpos += rows;
      if (cls_token_.trainable()) dcls += rows.row(0);
    }
  }
  if (!patch_proj_.HasTrainable() && !patch_ssf_.HasTrainable()) return;
  EnsureShape(dpatch_, int64_t{batch_} * patches_, dim_);
  for (int b = 0; b < batch_; ++b) {
    dpatch_.middleRows(int64_t{b} * patches_, patches_) =
        dtokens.middleRows(int64_t{b} * tokens_ + 1, patches_);
  }
  patch_ssf_.Backward(dpatch_);
  patch_proj_.Backward(patch_pixels_, dpatch_, nullptr);
}

}  // namespace fedcl::nn
