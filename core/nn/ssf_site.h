// A place in a backbone where an SSF module may scale and shift features (algorithms.md §2).
//
// Every backbone owns one SsfSite per SSF insertion point, inactive until peft binds a scale γ and
// a shift β to it. When active, Forward applies y ← y⊙γ + β per channel, in place:
//   - kColumns: rows are samples or tokens, channel c is column c (Linear and LayerNorm outputs);
//   - kRows: the "channel rows" layout of convolution stacks, channel c is row c.
// An inactive site costs nothing.
//
// The site also knows the layer it follows (`preceding`), so peft can fold γ, β into that layer's
// parameters for zero-overhead inference (§2.5).
#ifndef FEDCL_CORE_NN_SSF_SITE_H_
#define FEDCL_CORE_NN_SSF_SITE_H_

#include <string>

#include "core/nn/fold.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"

namespace fedcl::nn {

enum class ChannelAxis { kColumns, kRows };

class SsfSite {
 public:
  SsfSite(std::string name, int channels, ChannelAxis axis, ScaleShiftFoldable* preceding)
      : name_(std::move(name)), channels_(channels), axis_(axis), preceding_(preceding) {}

  // Binds γ and β (each [channels]). Replaces any previous binding.
  void Bind(const ParamRef& scale, const ParamRef& shift) {
    scale_ = scale;
    shift_ = shift;
  }
  void Unbind() {
    scale_ = ParamRef();
    shift_ = ParamRef();
  }
  bool active() const { return scale_.bound(); }
  bool HasTrainable() const { return scale_.trainable() || shift_.trainable(); }

  // y ← y⊙γ + β in place when active. With `keep_input`, remembers the input for Backward.
  void Forward(MatrixRef y, bool keep_input);
  // dy ← dy⊙γ in place (the gradient at the site's input); accumulates dγ, dβ if trainable.
  void Backward(MatrixRef dy);

  const std::string& name() const { return name_; }
  int channels() const { return channels_; }
  ChannelAxis axis() const { return axis_; }
  ScaleShiftFoldable* preceding() const { return preceding_; }
  const ParamRef& scale() const { return scale_; }
  const ParamRef& shift() const { return shift_; }

 private:
  std::string name_;
  int channels_;
  ChannelAxis axis_;
  ScaleShiftFoldable* preceding_;
  ParamRef scale_;
  ParamRef shift_;
  Matrix input_;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_SSF_SITE_H_
