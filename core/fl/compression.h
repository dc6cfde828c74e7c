// Compressed updates (algorithms-next.md §6): a device uploads each module's delta as float16,
// blockwise int8, or its top-k values in int8, and keeps what the compression lost as a residual
// that it adds to its next delta of that module (error feedback, §6.3):
//
//   u = Δ + e ;  c = C(u) ;  e ← u − D(c) ;  upload c
//
// so nothing learned is lost, only delayed. The server decodes c to D(c) and aggregates that as
// any float32 delta: the codec sits beside the rules, not inside them, and FedAU's weight applies
// to the decoded, unweighted delta (§6.3, FedAU).
//
// Codecs (B = block_size; payload bytes for d values, fp32 scales, §6.2):
//   float32  as is                                                4·d
//   float16  clamped to ±65504, rounded to nearest even            2·d
//   int8     per block of B values: s = max|x|/127, q = round(x/s)  d + 4·⌈d/B⌉
//   topk     the k = ⌈keep_fraction·d⌉ largest |x| (ties: the lower index first): increasing
//            indices sent as the varint (LEB128) gaps between them, and int8 values with per-block
//            scales over the kept values              Σ_j varint(gap_j) + k + 4·⌈k/B⌉
// The gaps are a departure from §6.2's top-k payload (4 bytes per index and 4 per value): at a
// keep fraction of a few percent most gaps fit one byte, 2·k bytes in all instead of 8·k.
// Rounding is deterministic (half to even): the same u always gives the same c, so a device that
// resends an update after a lost reply sends the same bytes.
//
// Decoding checks everything a hostile sender controls (Decompress): sizes against the module, a
// scale that is negative or not finite, an index out of range or not increasing, and refuses with
// InvalidArgument naming it, writing nothing.
//
// Secure aggregation (when it lands, §3.6): float16 and int8 compose with it if the quantised
// integers are what is masked and summed, which needs one scale for all clients (a shared range,
// not a per-client max); top-k does not, because clients keep different indices (§6.3 proposes a
// shared random-k instead). Until then, compression and secure aggregation are exclusive.
#ifndef FEDCL_CORE_FL_COMPRESSION_H_
#define FEDCL_CORE_FL_COMPRESSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace fedcl::fl {

struct CompressionSpec {
  enum class Codec { kFloat32, kFloat16, kInt8, kTopK };
  Codec codec = Codec::kFloat32;
  int32_t block_size = 256;    // int8 and topk: values per scale
  double keep_fraction = 0.0;  // topk: the share of values kept, in (0, 1]

  bool compresses() const { return codec != Codec::kFloat32; }
  bool operator==(const CompressionSpec&) const = default;
};

// "float32", "float16", "int8", "int8:<block>", "topk:<fraction>", "topk:<fraction>:<block>".
// InvalidArgument naming the part that is wrong: an unknown codec, a block outside [8, 2^20], a
// fraction outside (0, 1].
absl::StatusOr<CompressionSpec> ParseCompressionSpec(absl::string_view text);
// The text ParseCompressionSpec reads back to the same spec.
std::string CompressionSpecText(const CompressionSpec& spec);
absl::Status ValidateCompressionSpec(const CompressionSpec& spec);

// One module's delta, compressed. Which vectors are used depends on the codec.
struct CompressedValues {
  CompressionSpec spec;
  int64_t size = 0;               // d, the values it decodes to
  std::vector<uint16_t> halves;   // float16: d of them
  std::vector<int8_t> quantized;  // int8: d; topk: k
  std::vector<float> scales;      // int8 and topk: one per block of `quantized`
  std::vector<uint32_t> indices;  // topk: k, increasing, each < d
  std::vector<float> raw;         // float32: d

  // Payload bytes as they travel (the formulas above).
  int64_t bytes() const;
};

// The number of values topk keeps of d.
int64_t TopKCount(const CompressionSpec& spec, int64_t size);
// Payload bytes of a delta of `size` values compressed with `spec` (the formulas above); for
// topk an estimate before the indices are known, with every gap at the mean gap d/k.
int64_t CompressedBytes(const CompressionSpec& spec, int64_t size);

// The smallest and largest payload a valid delta of `size` values with `spec` can take: exact for
// every codec but topk, whose gaps take from 1 byte to the varint of the largest index each. (So a
// hostile header cannot make a server stage more than about twice what the float32 delta takes:
// the decoded floats, 4·d bytes, plus at most 3 bytes of gap, 1 of value and 0.5 of scale per
// value below 2^21, as top-k keeping every value in blocks of 8 would send.)
struct PayloadBounds {
  int64_t min = 0;
  int64_t max = 0;
};
PayloadBounds PayloadBytesBounds(const CompressionSpec& spec, int64_t size);

// Encodes `values` (finite) with `spec` (valid).
CompressedValues Compress(absl::Span<const float> values, const CompressionSpec& spec);

// Decodes `compressed` into `out`, which must hold compressed.size values (InvalidArgument
// otherwise). Checks the payload first (see the top of this file); on error `out` is unchanged.
absl::Status Decompress(const CompressedValues& compressed, absl::Span<float> out);

// Error feedback: u = delta + residual, c = Compress(u), decoded = D(c), residual = u − D(c).
// All spans hold the same number of values; `decoded` may not alias the others. InvalidArgument,
// nothing changed, if some value of u is not finite.
absl::StatusOr<CompressedValues> CompressWithFeedback(absl::Span<const float> delta,
                                                      absl::Span<float> residual,
                                                      const CompressionSpec& spec,
                                                      absl::Span<float> decoded);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_COMPRESSION_H_
