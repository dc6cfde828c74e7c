#include "core/fl/compression.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <numeric>

#include "Eigen/Core"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {
namespace {

constexpr int kInt8Levels = 127;
constexpr float kFloat16Max = 65504.0f;
constexpr int32_t kMinBlock = 8;
constexpr int32_t kMaxBlock = 1 << 20;
// A scale above this would decode 127·s to infinity.
constexpr float kMaxScale = FLT_MAX / kInt8Levels;

int64_t NumBlocks(int64_t count, int32_t block) { return (count + block - 1) / block; }

int64_t VarintBytes(uint64_t value) {
  int64_t bytes = 1;
  while (value >= 128) {
    value >>= 7;
    ++bytes;
  }
  return bytes;
}

// Symmetric int8 per block of `block` values (§6.2, deterministic rounding).
void QuantizeBlocks(absl::Span<const float> x, int32_t block, std::vector<int8_t>& q,
                    std::vector<float>& scales) {
  q.resize(x.size());
  scales.resize(static_cast<size_t>(NumBlocks(static_cast<int64_t>(x.size()), block)));
  for (size_t b = 0; b < scales.size(); ++b) {
    const size_t begin = b * static_cast<size_t>(block);
    const size_t end = std::min(x.size(), begin + static_cast<size_t>(block));
    float peak = 0.0f;
    for (size_t i = begin; i < end; ++i) peak = std::max(peak, std::abs(x[i]));
    const float s = peak / kInt8Levels;
    scales[b] = s;
    for (size_t i = begin; i < end; ++i) {
      const float level = s > 0.0f ? std::nearbyint(x[i] / s) : 0.0f;
      q[i] = static_cast<int8_t>(std::clamp(level, -127.0f, 127.0f));
    }
  }
}

absl::Status CheckQuantized(const CompressedValues& c, size_t count) {
  if (c.quantized.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat("compressed delta has ", c.quantized.size(),
                                                   " quantized values, expected ", count));
  }
  const size_t blocks =
      static_cast<size_t>(NumBlocks(static_cast<int64_t>(count), c.spec.block_size));
  if (c.scales.size() != blocks) {
    return absl::InvalidArgumentError(
        absl::StrCat("compressed delta has ", c.scales.size(), " scales, expected ", blocks));
  }
  for (size_t b = 0; b < blocks; ++b) {
    if (!(c.scales[b] >= 0.0f && c.scales[b] <= kMaxScale)) {
      return absl::InvalidArgumentError(absl::StrCat("compressed delta: scale ", b, " is ",
                                                     c.scales[b], "; it must be in [0, ", kMaxScale,
                                                     "]"));
    }
  }
  for (size_t i = 0; i < count; ++i) {
    if (c.quantized[i] < -kInt8Levels) {
      return absl::InvalidArgumentError(absl::StrCat("compressed delta: quantized value ", i,
                                                     " is ", c.quantized[i],
                                                     ", outside [-127, 127]"));
    }
  }
  return absl::OkStatus();
}

float Dequantize(const CompressedValues& c, size_t i) {
  return static_cast<float>(c.quantized[i]) * c.scales[i / static_cast<size_t>(c.spec.block_size)];
}

}  // namespace

absl::Status ValidateCompressionSpec(const CompressionSpec& spec) {
  if (spec.codec == CompressionSpec::Codec::kInt8 || spec.codec == CompressionSpec::Codec::kTopK) {
    if (spec.block_size < kMinBlock || spec.block_size > kMaxBlock) {
      return absl::InvalidArgumentError(absl::StrCat("compression block is ", spec.block_size,
                                                     "; it must be in [", kMinBlock, ", ",
                                                     kMaxBlock, "]"));
    }
  }
  if (spec.codec == CompressionSpec::Codec::kTopK &&
      !(spec.keep_fraction > 0.0 && spec.keep_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("topk keeps a fraction of ", spec.keep_fraction,
                                                   " of the values; it must be in (0, 1]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CompressionSpec> ParseCompressionSpec(absl::string_view text) {
  const std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  CompressionSpec spec;
  auto block = [&](absl::string_view part) -> absl::Status {
    if (!absl::SimpleAtoi(part, &spec.block_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("compression '", text, "': block '", part, "' is not an integer"));
    }
    return absl::OkStatus();
  };
  const absl::string_view codec = parts[0];
  if (codec == "float32" && parts.size() == 1) {
    spec.codec = CompressionSpec::Codec::kFloat32;
  } else if (codec == "float16" && parts.size() == 1) {
    spec.codec = CompressionSpec::Codec::kFloat16;
  } else if (codec == "int8" && parts.size() <= 2) {
    spec.codec = CompressionSpec::Codec::kInt8;
    if (parts.size() == 2) FEDCL_RETURN_IF_ERROR(block(parts[1]));
  } else if (codec == "topk" && (parts.size() == 2 || parts.size() == 3)) {
    spec.codec = CompressionSpec::Codec::kTopK;
    if (!absl::SimpleAtod(parts[1], &spec.keep_fraction)) {
      return absl::InvalidArgumentError(
          absl::StrCat("compression '", text, "': fraction '", parts[1], "' is not a number"));
    }
    if (parts.size() == 3) FEDCL_RETURN_IF_ERROR(block(parts[2]));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("compression '", text,
                     "' is not one of float32, float16, int8[:block], topk:fraction[:block]"));
  }
  FEDCL_RETURN_IF_ERROR(ValidateCompressionSpec(spec));
  return spec;
}

std::string CompressionSpecText(const CompressionSpec& spec) {
  switch (spec.codec) {
    case CompressionSpec::Codec::kFloat32:
      return "float32";
    case CompressionSpec::Codec::kFloat16:
      return "float16";
    case CompressionSpec::Codec::kInt8:
      return absl::StrCat("int8:", spec.block_size);
    case CompressionSpec::Codec::kTopK:
      return absl::StrCat("topk:", spec.keep_fraction, ":", spec.block_size);
  }
  return "float32";
}

int64_t TopKCount(const CompressionSpec& spec, int64_t size) {
  if (size == 0) return 0;
  const double kept = std::ceil(spec.keep_fraction * static_cast<double>(size));
  return std::clamp<int64_t>(static_cast<int64_t>(kept), 1, size);
}

int64_t CompressedBytes(const CompressionSpec& spec, int64_t size) {
  switch (spec.codec) {
    case CompressionSpec::Codec::kFloat32:
      return 4 * size;
    case CompressionSpec::Codec::kFloat16:
      return 2 * size;
    case CompressionSpec::Codec::kInt8:
      return size + 4 * NumBlocks(size, spec.block_size);
    case CompressionSpec::Codec::kTopK: {
      const int64_t k = TopKCount(spec, size);
      if (k == 0) return 0;
      return k * (1 + VarintBytes(static_cast<uint64_t>(size / k))) +
             4 * NumBlocks(k, spec.block_size);
    }
  }
  return 4 * size;
}

PayloadBounds PayloadBytesBounds(const CompressionSpec& spec, int64_t size) {
  if (spec.codec != CompressionSpec::Codec::kTopK) {
    const int64_t exact = CompressedBytes(spec, size);
    return {exact, exact};
  }
  // Each gap is at least 1 byte, and at most the varint of the largest index, d − 1: the gaps
  // are non-negative and sum to the last index.
  const int64_t k = TopKCount(spec, size);
  const int64_t values_and_scales = k + 4 * NumBlocks(k, spec.block_size);
  const int64_t widest_gap = VarintBytes(static_cast<uint64_t>(std::max<int64_t>(size - 1, 0)));
  return {k + values_and_scales, widest_gap * k + values_and_scales};
}

int64_t CompressedValues::bytes() const {
  if (spec.codec != CompressionSpec::Codec::kTopK) return CompressedBytes(spec, size);
  int64_t gap_bytes = 0;
  uint32_t previous = 0;
  for (size_t j = 0; j < indices.size(); ++j) {
    gap_bytes += VarintBytes(j == 0 ? indices[0] : indices[j] - previous);
    previous = indices[j];
  }
  const int64_t k = static_cast<int64_t>(indices.size());
  return gap_bytes + k + 4 * NumBlocks(k, spec.block_size);
}

CompressedValues Compress(absl::Span<const float> values, const CompressionSpec& spec) {
  CompressedValues c;
  c.spec = spec;
  c.size = static_cast<int64_t>(values.size());
  switch (spec.codec) {
    case CompressionSpec::Codec::kFloat32:
      c.raw.assign(values.begin(), values.end());
      break;
    case CompressionSpec::Codec::kFloat16:
      c.halves.resize(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        const Eigen::half h(std::clamp(values[i], -kFloat16Max, kFloat16Max));
        c.halves[i] = Eigen::numext::bit_cast<uint16_t>(h);
      }
      break;
    case CompressionSpec::Codec::kInt8:
      QuantizeBlocks(values, spec.block_size, c.quantized, c.scales);
      break;
    case CompressionSpec::Codec::kTopK: {
      const int64_t k = TopKCount(spec, c.size);
      std::vector<uint32_t> order(values.size());
      std::iota(order.begin(), order.end(), 0u);
      // A strict total order: larger |value| first, then the lower index.
      auto before = [&](uint32_t a, uint32_t b) {
        const float ma = std::abs(values[a]), mb = std::abs(values[b]);
        return ma != mb ? ma > mb : a < b;
      };
      std::nth_element(order.begin(), order.begin() + k, order.end(), before);
      c.indices.assign(order.begin(), order.begin() + k);
      std::sort(c.indices.begin(), c.indices.end());
      std::vector<float> kept(c.indices.size());
      for (size_t j = 0; j < kept.size(); ++j) kept[j] = values[c.indices[j]];
      QuantizeBlocks(kept, spec.block_size, c.quantized, c.scales);
      break;
    }
  }
  return c;
}

absl::Status Decompress(const CompressedValues& c, absl::Span<float> out) {
  FEDCL_RETURN_IF_ERROR(ValidateCompressionSpec(c.spec));
  if (c.size != static_cast<int64_t>(out.size())) {
    return absl::InvalidArgumentError(absl::StrCat("compressed delta decodes to ", c.size,
                                                   " values; the module has ", out.size()));
  }
  const size_t d = out.size();
  switch (c.spec.codec) {
    case CompressionSpec::Codec::kFloat32:
      if (c.raw.size() != d) {
        return absl::InvalidArgumentError(
            absl::StrCat("float32 delta has ", c.raw.size(), " values, expected ", d));
      }
      for (size_t i = 0; i < d; ++i) {
        if (!std::isfinite(c.raw[i])) {
          return absl::InvalidArgumentError(
              absl::StrCat("float32 delta: value ", i, " is ", c.raw[i], " (not finite)"));
        }
      }
      std::copy(c.raw.begin(), c.raw.end(), out.begin());
      return absl::OkStatus();
    case CompressionSpec::Codec::kFloat16:
      if (c.halves.size() != d) {
        return absl::InvalidArgumentError(
            absl::StrCat("float16 delta has ", c.halves.size(), " values, expected ", d));
      }
      for (size_t i = 0; i < d; ++i) {
        if ((c.halves[i] & 0x7c00) == 0x7c00) {  // exponent all ones: infinity or NaN
          return absl::InvalidArgumentError(
              absl::StrCat("float16 delta: value ", i, " is not finite"));
        }
      }
      for (size_t i = 0; i < d; ++i)
        out[i] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(c.halves[i]));
      return absl::OkStatus();
    case CompressionSpec::Codec::kInt8:
      FEDCL_RETURN_IF_ERROR(CheckQuantized(c, d));
      for (size_t i = 0; i < d; ++i) out[i] = Dequantize(c, i);
      return absl::OkStatus();
    case CompressionSpec::Codec::kTopK: {
      const size_t k = static_cast<size_t>(TopKCount(c.spec, c.size));
      if (c.indices.size() != k) {
        return absl::InvalidArgumentError(absl::StrCat("topk delta keeps ", c.indices.size(),
                                                       " values; ", c.spec.keep_fraction, " of ", d,
                                                       " is ", k));
      }
      FEDCL_RETURN_IF_ERROR(CheckQuantized(c, k));
      for (size_t j = 0; j < k; ++j) {
        if (c.indices[j] >= d || (j > 0 && c.indices[j] <= c.indices[j - 1])) {
          return absl::InvalidArgumentError(
              absl::StrCat("topk delta: index ", j, " is ", c.indices[j],
                           "; indices must increase and stay below ", d));
        }
      }
      std::fill(out.begin(), out.end(), 0.0f);
      for (size_t j = 0; j < k; ++j) out[c.indices[j]] = Dequantize(c, j);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown compression codec");
}

absl::StatusOr<CompressedValues> CompressWithFeedback(absl::Span<const float> delta,
                                                      absl::Span<float> residual,
                                                      const CompressionSpec& spec,
                                                      absl::Span<float> decoded) {
  std::vector<float> u(delta.size());
  for (size_t i = 0; i < u.size(); ++i) {
    u[i] = delta[i] + residual[i];
    if (!std::isfinite(u[i])) {
      return absl::InvalidArgumentError(absl::StrCat("delta plus residual is not finite at value ",
                                                     i, " (", delta[i], " + ", residual[i], ")"));
    }
  }
  CompressedValues c = Compress(u, spec);
  FEDCL_RETURN_IF_ERROR(Decompress(c, decoded));  // cannot fail: our encoding of finite values
  for (size_t i = 0; i < u.size(); ++i) residual[i] = u[i] - decoded[i];
  return c;
}

}  // namespace fedcl::fl
