#include "core/fl/update_validation.h"

#include <algorithm>
#include <cmath>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/nn/tensor.h"

namespace fedcl::fl {

std::string EchoInput(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  // Back up over UTF-8 continuation bytes (10xxxxxx) so that no character is cut in half.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(text.substr(0, cut), "\u2026 (", text.size(), " bytes)");
}

absl::Status ValidateTrainingReport(int64_t num_samples, int64_t local_steps, double loss) {
  if (num_samples < 0 || num_samples > kMaxNumSamples) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_samples is ", num_samples, "; it must be in [0, ", kMaxNumSamples, "]"));
  }
  if (local_steps < 0 || local_steps > kMaxLocalSteps) {
    return absl::InvalidArgumentError(
        absl::StrCat("local_steps is ", local_steps, "; it must be in [0, ", kMaxLocalSteps, "]"));
  }
  if (!std::isfinite(loss) || std::abs(loss) > kMaxAbsLoss) {
    return absl::InvalidArgumentError(
        absl::StrCat("loss is ", loss, "; it must be finite and within +-", kMaxAbsLoss));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LayoutNumValues(absl::Span<const TensorSpec> layout) {
  constexpr int64_t kMaxValues = int64_t{1} << 62;
  int64_t total = 0;
  for (const TensorSpec& spec : layout) {
    int64_t count = 1;
    for (int64_t dim : spec.shape) {
      if (dim <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", EchoInput(spec.name),
                                                       "': dimension ", dim, " is not positive"));
      }
      if (count > kMaxValues / dim) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", EchoInput(spec.name), "': shape ",
                         EchoInput(nn::ShapeToString(spec.shape)), " holds more than 2^62 values"));
      }
      count *= dim;
    }
    if (count > kMaxValues - total) {
      return absl::InvalidArgumentError("the layout holds more than 2^62 values in all");
    }
    total += count;
  }
  return total;
}

absl::Status ValidateDeltaLayout(absl::string_view module_name, absl::Span<const TensorSpec> layout,
                                 const nn::ParameterSet& module) {
  const std::string name = EchoInput(module_name);
  if (layout.size() != static_cast<size_t>(module.num_tensors())) {
    return absl::InvalidArgumentError(absl::StrCat("module '", name, "': delta has ", layout.size(),
                                                   " tensors, the module ", module.num_tensors()));
  }
  for (int t = 0; t < module.num_tensors(); ++t) {
    const nn::TensorInfo& want = module.info(t);
    const TensorSpec& got = layout[t];
    if (got.name != want.name) {
      return absl::InvalidArgumentError(absl::StrCat("module '", name, "': tensor ", t, " is '",
                                                     EchoInput(got.name), "', expected '",
                                                     want.name, "'"));
    }
    if (got.shape != want.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "module '", name, "': tensor '", want.name, "' has shape ",
          EchoInput(nn::ShapeToString(got.shape)), ", expected ", nn::ShapeToString(want.shape)));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateModuleDelta(const ModuleDelta& delta, const nn::ParameterSet& module) {
  FEDCL_RETURN_IF_ERROR(ValidateDeltaLayout(delta.name, delta.layout, module));
  if (static_cast<int64_t>(delta.values.size()) != module.num_values()) {
    return absl::InvalidArgumentError(absl::StrCat("module '", EchoInput(delta.name),
                                                   "': delta has ", delta.values.size(),
                                                   " values, expected ", module.num_values()));
  }
  return absl::OkStatus();
}

absl::Status FindNonFinite(const UpdateSubmission& update) {
  for (const ModuleDelta& delta : update.modules) {
    for (size_t i = 0; i < delta.values.size(); ++i) {
      if (!std::isfinite(delta.values[i])) {
        return absl::InvalidArgumentError(absl::StrCat("module '", EchoInput(delta.name),
                                                       "': value ", i, " is ", delta.values[i],
                                                       " (not finite)"));
      }
    }
  }
  return absl::OkStatus();
}

namespace {

// Adds v[i]^2 to lanes[i % 8] and takes |v[i]| into peaks[i % 8]. A float's square is exact in
// double (24 + 24 bits of mantissa), so the fused multiply-add of the vector path rounds exactly
// as the scalar multiply and add do: both paths give the same bits on every build.
void AddSquaresByLane(const float* v, size_t n, double lanes[8], float peaks[8]) {
  size_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256d low = _mm256_loadu_pd(lanes);
  __m256d high = _mm256_loadu_pd(lanes + 4);
  __m256 peak = _mm256_loadu_ps(peaks);
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(v + i);
    const __m256d x_low = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    const __m256d x_high = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    low = _mm256_fmadd_pd(x_low, x_low, low);
    high = _mm256_fmadd_pd(x_high, x_high, high);
    peak = _mm256_max_ps(peak, _mm256_and_ps(x, magnitude));
  }
  _mm256_storeu_pd(lanes, low);
  _mm256_storeu_pd(lanes + 4, high);
  _mm256_storeu_ps(peaks, peak);
#endif
  for (; i < n; ++i) {
    lanes[i % 8] += static_cast<double>(v[i]) * v[i];
    peaks[i % 8] = std::max(peaks[i % 8], std::abs(v[i]));
  }
}

}  // namespace

double SquaredNorm(const UpdateSubmission& update, std::vector<float>* largest,
                   const std::vector<bool>* skip) {
  // The norm decides the clipping factor, which is part of the fold weight, so its bits must not
  // depend on where the host's buffer happens to sit: eight lanes by index, summed in a fixed
  // order, rather than an address-aligned vector reduction.
  double lanes[8] = {};
  double skipped_lanes[8] = {};  // only to see whether a skipped module's values are finite
  if (largest != nullptr) largest->clear();
  for (size_t m = 0; m < update.modules.size(); ++m) {
    const ModuleDelta& delta = update.modules[m];
    float peaks[8] = {};
    AddSquaresByLane(delta.values.data(), delta.values.size(),
                     skip != nullptr && (*skip)[m] ? skipped_lanes : lanes, peaks);
    if (largest != nullptr) largest->push_back(*std::max_element(peaks, peaks + 8));
  }
  double skipped = 0.0;
  for (double lane : skipped_lanes) skipped += lane;
  if (!std::isfinite(skipped)) return skipped;
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
         ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

}  // namespace fedcl::fl
