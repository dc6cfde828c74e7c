// The frozen (or trainable) feature extractor every device shares.
//
// A Backbone maps a batch of flattened images [n, C·H·W] to features [n, feature_dim] and back
// (gradients). Its weights live in one ParameterSet. It also exposes its extension points, where
// peft attaches parameter-efficient modules:
//   - SSF sites (ssf_site.h), named after the operation they follow, e.g. "blocks.0.attn.qkv";
//   - Linear layers that accept a LoRA branch ("blocks.0.attn.qkv", "blocks.0.mlp.fc1", ...);
//   - adapter branches parallel to each transformer block's MLP ("blocks.0.adapter").
//
// Backward propagates only as far back as something trainable: with a frozen backbone and SSF
// everywhere, the first layer's weight and input gradients are never computed.
//
// Forward(training=true) keeps what Backward needs; Backward must follow it for the same batch.
// Not thread-safe: each thread (or simulated client) uses its own replica.
#ifndef FEDCL_CORE_NN_BACKBONE_H_
#define FEDCL_CORE_NN_BACKBONE_H_

#include <memory>
#include <vector>

#include "core/base/random.h"
#include "core/nn/adapter_branch.h"
#include "core/nn/linear.h"
#include "core/nn/model_config.h"
#include "core/nn/parameter_set.h"
#include "core/nn/ssf_site.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

class Backbone {
 public:
  virtual ~Backbone() = default;

  virtual BackboneKind kind() const = 0;
  virtual int feature_dim() const = 0;

  // images: [n, C·H·W] → features [n, feature_dim]. The reference stays valid until the next call.
  virtual const Matrix& Forward(ConstMatrixRef images, bool training) = 0;
  // Accumulates gradients of every trainable tensor (own and attached) from dfeatures.
  virtual void Backward(ConstMatrixRef dfeatures) = 0;

  ParameterSet& parameters() { return params_; }
  const ParameterSet& parameters() const { return params_; }

  // Extension points, in forward order. Pointers stay valid for the backbone's lifetime.
  const std::vector<SsfSite*>& ssf_sites() const { return ssf_sites_; }
  const std::vector<Linear*>& lora_targets() const { return lora_targets_; }
  const std::vector<AdapterBranch*>& adapter_sites() const { return adapter_sites_; }

 protected:
  explicit Backbone(std::string name) : params_(std::move(name)) {}
  ParameterSet params_;
  std::vector<SsfSite*> ssf_sites_;
  std::vector<Linear*> lora_targets_;
  std::vector<AdapterBranch*> adapter_sites_;
};

// Builds the backbone `config` describes, initialised from `rng` as its reference does:
// Kaiming-normal for the MLP and CNN (FedAU's models), timm's ViT init for the ViT.
// `config` must be valid (ModelConfig::Validate).
std::unique_ptr<Backbone> CreateBackbone(const ModelConfig& config, base::Rng& rng);

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_BACKBONE_H_
