#include "client/sdk/memory_estimate.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace fedcl::sdk {

std::string Mib(int64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

int64_t ParameterSetBytes(const nn::ParameterSet& set) {
  const int64_t copies = set.has_gradients() ? 2 : 1;
  return copies * set.num_values() * int64_t{sizeof(float)};
}

int64_t BatchWorkingBytes(const nn::ModelConfig& config, int64_t batch, bool training) {
  // Floats one sample keeps alive per layer of the forward pass.
  int64_t per_layer = 0;
  int64_t layers = 1;
  const int64_t input = config.input_size();
  switch (config.backbone) {
    case nn::BackboneKind::kVit: {
      const nn::VitConfig& v = config.vit;
      const int64_t tokens =
          int64_t{config.image_height / v.patch} * (config.image_width / v.patch) + 1;
      const int64_t d = v.dim;
      // Two LayerNorm outputs, q/k/v, attention output and projection, two residual sums and the
      // adapter's output (≈ 10 token×width matrices), the MLP's hidden layer before and after
      // the activation, and one tokens×tokens attention map per head.
      per_layer = tokens * d * (10 + 2 * v.mlp_ratio) + int64_t{v.heads} * tokens * tokens;
      layers = v.depth;
      break;
    }
    case nn::BackboneKind::kCnn: {
      const nn::CnnConfig& c = config.cnn;
      per_layer = 2 * input * std::max(c.conv1_channels, c.conv2_channels);
      layers = 2;
      break;
    }
    case nn::BackboneKind::kMlp:
      for (int h : config.mlp.hidden) per_layer = std::max<int64_t>(per_layer, 2 * h);
      layers = static_cast<int64_t>(config.mlp.hidden.size());
      break;
  }
  const int64_t head = 4 * int64_t{config.num_classes};
  // Every layer keeps its activations in buffers it reuses from call to call (inference too), so
  // a forward holds all of them; a training step adds the gradients flowing back, which reuse
  // buffers of their own: about half as much again (measured on the ViT by
  // tests/bench/sdk_predict_latency.cc: 9.9 MiB for a forward of 32 images, 2.8 MiB more for the
  // step).
  const int64_t forward = input + layers * per_layer + head;
  const int64_t floats = training ? forward + forward / 2 : forward;
  return batch * floats * int64_t{sizeof(float)};
}

}  // namespace fedcl::sdk
