#include "core/nn/model_config.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::nn {
namespace {

absl::Status Positive(absl::string_view field, int value, int max) {
  if (value <= 0 || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: ", field, " must be in [1, ", max, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view BackboneKindName(BackboneKind kind) {
  switch (kind) {
    case BackboneKind::kMlp:
      return "mlp";
    case BackboneKind::kCnn:
      return "cnn";
    case BackboneKind::kVit:
      return "vit";
  }
  return "unknown";
}

absl::StatusOr<BackboneKind> ParseBackboneKind(absl::string_view name) {
  if (name == "mlp") return BackboneKind::kMlp;
  if (name == "cnn") return BackboneKind::kCnn;
  if (name == "vit") return BackboneKind::kVit;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backbone '", name, "' (expected mlp, cnn or vit)"));
}

absl::string_view HeadKindName(HeadKind kind) {
  return kind == HeadKind::kLinear ? "linear" : "cosine";
}

absl::StatusOr<HeadKind> ParseHeadKind(absl::string_view name) {
  if (name == "linear") return HeadKind::kLinear;
  if (name == "cosine") return HeadKind::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown head '", name, "' (expected linear or cosine)"));
}

absl::Status ModelConfig::Validate() const {
  constexpr int kMaxWidth = 1 << 16;
  FEDCL_RETURN_IF_ERROR(Positive("image_channels", image_channels, 64));
  FEDCL_RETURN_IF_ERROR(Positive("image_height", image_height, 4096));
  FEDCL_RETURN_IF_ERROR(Positive("image_width", image_width, 4096));
  FEDCL_RETURN_IF_ERROR(Positive("num_classes", num_classes, kMaxWidth));
  switch (backbone) {
    case BackboneKind::kMlp:
      if (mlp.hidden.empty()) {
        return absl::InvalidArgumentError("model config: mlp needs at least one hidden layer");
      }
      for (int width : mlp.hidden)
        FEDCL_RETURN_IF_ERROR(Positive("mlp hidden width", width, kMaxWidth));
      break;
    case BackboneKind::kCnn:
      FEDCL_RETURN_IF_ERROR(Positive("cnn conv1_channels", cnn.conv1_channels, 4096));
      FEDCL_RETURN_IF_ERROR(Positive("cnn conv2_channels", cnn.conv2_channels, 4096));
      FEDCL_RETURN_IF_ERROR(Positive("cnn hidden", cnn.hidden, kMaxWidth));
      if (image_height % 4 != 0 || image_width % 4 != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model config: cnn needs image height and width divisible by 4 (two 2×2 pools), got ",
            image_height, "×", image_width));
      }
      break;
    case BackboneKind::kVit:
      FEDCL_RETURN_IF_ERROR(Positive("vit patch", vit.patch, 256));
      FEDCL_RETURN_IF_ERROR(Positive("vit dim", vit.dim, kMaxWidth));
      FEDCL_RETURN_IF_ERROR(Positive("vit depth", vit.depth, 256));
      FEDCL_RETURN_IF_ERROR(Positive("vit heads", vit.heads, 256));
      FEDCL_RETURN_IF_ERROR(Positive("vit mlp_ratio", vit.mlp_ratio, 64));
      if (vit.dim % vit.heads != 0) {
        return absl::InvalidArgumentError(absl::StrCat("model config: vit dim ", vit.dim,
                                                       " is not divisible by heads ", vit.heads));
      }
      if (image_height % vit.patch != 0 || image_width % vit.patch != 0) {
        return absl::InvalidArgumentError(absl::StrCat("model config: vit patch ", vit.patch,
                                                       " does not tile a ", image_height, "×",
                                                       image_width, " image"));
      }
      break;
  }
  return absl::OkStatus();
}

}  // namespace fedcl::nn
