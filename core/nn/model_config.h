// What a model is: which backbone, its sizes, the input geometry and the head. A ModelConfig plus
// a seed builds a model (model.h); a checkpoint stores the config next to the weights.
//
//   nn::ModelConfig config;
//   config.backbone = nn::BackboneKind::kVit;   // defaults: dim 64, 4 heads, 4 blocks
//   config.num_classes = 10;
//   FEDCL_RETURN_IF_ERROR(config.Validate());
#ifndef FEDCL_CORE_NN_MODEL_CONFIG_H_
#define FEDCL_CORE_NN_MODEL_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedcl::nn {

enum class BackboneKind { kMlp, kCnn, kVit };
enum class HeadKind { kLinear, kCosine };

// "mlp" / "cnn" / "vit"; "linear" / "cosine".
absl::string_view BackboneKindName(BackboneKind kind);
absl::StatusOr<BackboneKind> ParseBackboneKind(absl::string_view name);
absl::string_view HeadKindName(HeadKind kind);
absl::StatusOr<HeadKind> ParseHeadKind(absl::string_view name);

// Fully connected: Linear → ReLU for each hidden width; features = the last hidden layer.
struct MlpConfig {
  std::vector<int> hidden = {256, 128};
};

// The FedAU reference CNN for Fashion-MNIST (algorithms.md §1.8): conv3×3 → ReLU → maxpool2,
// twice, then FC → ReLU; features = the FC output. Input height and width must be divisible by 4.
struct CnnConfig {
  int conv1_channels = 32;
  int conv2_channels = 32;
  int hidden = 128;
};

// A small pre-LN vision transformer: non-overlapping patches → tokens + CLS + learned position
// embedding → `depth` blocks → final LayerNorm; features = the CLS token.
struct VitConfig {
  int patch = 7;  // 28×28 input → 16 patch tokens
  int dim = 64;
  int depth = 4;
  int heads = 4;
  int mlp_ratio = 4;  // MLP hidden = mlp_ratio · dim
};

struct ModelConfig {
  BackboneKind backbone = BackboneKind::kVit;
  MlpConfig mlp;
  CnnConfig cnn;
  VitConfig vit;
  // Input images, flattened channel-major (C, H, W) into one row per sample.
  int image_channels = 1;
  int image_height = 28;
  int image_width = 28;
  HeadKind head = HeadKind::kLinear;
  int num_classes = 10;

  int input_size() const { return image_channels * image_height * image_width; }
  // InvalidArgument naming the first field that is out of range.
  absl::Status Validate() const;
};

}  // namespace fedcl::nn

#endif  // FEDCL_CORE_NN_MODEL_CONFIG_H_
