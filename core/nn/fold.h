// Layers that a per-channel scale-and-shift (SSF) can be folded into.
#ifndef FEDCL_CORE_NN_FOLD_H_
#define FEDCL_CORE_NN_FOLD_H_

namespace fedcl::nn {

// A layer whose output channel o can absorb y_o ← γ_o·y_o + β_o exactly by rewriting its own
// parameters (algorithms.md §2.5): Linear and Conv2d scale weight row o and set b' = γ⊙b + β;
// LayerNorm sets w' = γ⊙w and b' = γ⊙b + β.
class ScaleShiftFoldable {
 public:
  virtual ~ScaleShiftFoldable() = default;
  // `gamma` and `beta` have one entry per output channel.
  virtual void FoldScaleShift(const float* gamma, const float* beta) = 0;
  // Number of output channels.
  virtual int fold_channels() const = 0;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_FOLD_H_
