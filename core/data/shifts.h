// Domain shifts for continual-learning streams (issue: continual learning; cl_domains scenario):
// contrast inversion, a 90° rotation, Gaussian noise (σ = 0.3 on [0, 1] pixels, clipped back to
// [0, 1]) and Gaussian blur (σ = 1.5, a separable kernel of radius ⌈3σ⌉ with edge pixels
// repeated). They act on [0, 1] pixels; images standardised with `mean`/`stddev` (as
// LoadFashionMnist does by default) are converted there and back.
#ifndef FEDCL_CORE_DATA_SHIFTS_H_
#define FEDCL_CORE_DATA_SHIFTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/random.h"
#include "core/data/dataset.h"
#include "core/data/fashion_mnist.h"

namespace fedcl::data {

enum class Shift { kNone, kInversion, kRotation, kNoise, kBlur };

// "none", "inversion", "rotation", "noise", "blur".
absl::StatusOr<Shift> ParseShift(absl::string_view name);
absl::string_view ShiftName(Shift shift);

struct ShiftOptions {
  float noise_stddev = 0.3f;
  float blur_sigma = 1.5f;
  bool standardized = true;  // images are (pixel − mean) / stddev
  float mean = kFashionMnistMean;
  float stddev = kFashionMnistStddev;
};

// Shifts every image of `dataset` in place (rotation needs square images). `rng` draws the noise.
absl::Status ApplyShift(Shift shift, Dataset& dataset, base::Rng& rng,
                        const ShiftOptions& options = {});

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_SHIFTS_H_
