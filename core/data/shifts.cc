#include "core/data/shifts.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace fedcl::data {

absl::StatusOr<Shift> ParseShift(absl::string_view name) {
  if (name == "none") return Shift::kNone;
  if (name == "inversion") return Shift::kInversion;
  if (name == "rotation") return Shift::kRotation;
  if (name == "noise") return Shift::kNoise;
  if (name == "blur") return Shift::kBlur;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown shift '", name, "' (expected none, inversion, rotation, noise or blur)"));
}

absl::string_view ShiftName(Shift shift) {
  switch (shift) {
    case Shift::kNone:
      return "none";
    case Shift::kInversion:
      return "inversion";
    case Shift::kRotation:
      return "rotation";
    case Shift::kNoise:
      return "noise";
    case Shift::kBlur:
      return "blur";
  }
  return "?";
}

namespace {

// One channel plane (h × w, row-major) blurred separably with `kernel` (odd length), edges
// repeated.
void Blur(float* plane, int h, int w, const std::vector<float>& kernel, std::vector<float>& tmp) {
  const int r = static_cast<int>(kernel.size()) / 2;
  tmp.assign(static_cast<size_t>(h) * w, 0.0f);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float sum = 0;
      for (int k = -r; k <= r; ++k)
        sum += kernel[k + r] * plane[y * w + std::clamp(x + k, 0, w - 1)];
      tmp[y * w + x] = sum;
    }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      float sum = 0;
      for (int k = -r; k <= r; ++k) sum += kernel[k + r] * tmp[std::clamp(y + k, 0, h - 1) * w + x];
      plane[y * w + x] = sum;
    }
}

}  // namespace

absl::Status ApplyShift(Shift shift, Dataset& dataset, base::Rng& rng, const ShiftOptions& o) {
  if (shift == Shift::kNone) return absl::OkStatus();
  const int c = dataset.channels, h = dataset.height, w = dataset.width;
  if (shift == Shift::kRotation && h != w) {
    return absl::InvalidArgumentError("a 90° rotation needs square images");
  }
  nn::Matrix& images = dataset.images;
  if (o.standardized) images = (images.array() * o.stddev + o.mean).matrix();
  std::vector<float> kernel, tmp, rotated(static_cast<size_t>(h) * w);
  if (shift == Shift::kBlur) {
    const int r = static_cast<int>(std::ceil(3 * o.blur_sigma));
    float sum = 0;
    for (int k = -r; k <= r; ++k) {
      kernel.push_back(std::exp(-0.5f * k * k / (o.blur_sigma * o.blur_sigma)));
      sum += kernel.back();
    }
    for (float& k : kernel) k /= sum;
  }
  for (int64_t i = 0; i < images.rows(); ++i) {
    float* image = images.row(i).data();
    for (int ch = 0; ch < c; ++ch) {
      float* plane = image + static_cast<int64_t>(ch) * h * w;
      switch (shift) {
        case Shift::kInversion:
          for (int p = 0; p < h * w; ++p) plane[p] = 1.0f - plane[p];
          break;
        case Shift::kRotation:
          // 90° counter-clockwise: out(y, x) = in(x, w − 1 − y).
          for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) rotated[y * w + x] = plane[x * w + (w - 1 - y)];
          std::copy(rotated.begin(), rotated.end(), plane);
          break;
        case Shift::kNoise:
          for (int p = 0; p < h * w; ++p) {
            plane[p] = std::clamp(plane[p] + o.noise_stddev * static_cast<float>(rng.Normal()),
                                  0.0f, 1.0f);
          }
          break;
        case Shift::kBlur:
          Blur(plane, h, w, kernel, tmp);
          break;
        case Shift::kNone:
          break;
      }
    }
  }
  if (o.standardized) images = ((images.array() - o.mean) / o.stddev).matrix();
  return absl::OkStatus();
}

}  // namespace fedcl::data
