#include "core/fl/fixed_point_accumulator.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "tbb/blocked_range.h"
#include "tbb/parallel_for.h"

namespace fedcl::fl {
namespace {

// x + 1.5·2^52 lands in [2^52, 2^53) for |x| < 2^51, where doubles are spaced 1 apart: the
// addition rounds x to an integer (nearest, ties to even) and that integer sits in the low
// mantissa bits. Subtracting the magic number's bit pattern recovers it as an int64; the reverse
// converts an int64 of magnitude < 2^51 to a double exactly. Both vectorise on AVX2.
constexpr double kMagic = 0x1.8p52;
constexpr int64_t kMagicBits = 0x4338000000000000;
constexpr double kFastLimit = 0x1p51;  // magnitudes (in units) the magic trick handles
constexpr int64_t kBoundLimit = int64_t{1} << 62;
constexpr double kBoundLimitDouble = 0x1p62;
constexpr uint32_t kAbsMask = 0x7fffffff;
constexpr uint32_t kInfBits = 0x7f800000;  // |bits| at or above this: infinity or NaN

enum Outcome : int8_t { kUntouched = 0, kAddedFast, kAddedSlow, kNonFinite, kOverflow };

template <bool kFast>
inline uint64_t RoundToUnits(double x) {
  if constexpr (kFast) {
    const double shifted = x + kMagic;
    return std::bit_cast<uint64_t>(shifted) - static_cast<uint64_t>(kMagicBits);
  } else {
    return static_cast<uint64_t>(std::llrint(x));
  }
}

template <bool kFast>
inline double UnitsToDouble(int64_t u) {
  if constexpr (kFast) {
    return std::bit_cast<double>(u + kMagicBits) - kMagic;
  } else {
    return static_cast<double>(u);
  }
}

// max|plus[i]| and max|minus[i]| over a chunk, as bit patterns: for non-negative floats the bit
// patterns order like the values, and anything >= kInfBits is infinite or NaN. An integer max
// vectorises and has no NaN ambiguity.
struct MaxBits {
  uint32_t plus = 0;
  uint32_t minus = 0;
};

// acc[i] += T_i (or −= T_i with kSubtract), T_i = R(ws·plus[i]) − R(ws·minus[i]) (minus only
// with kDiff), and returns the chunk's MaxBits from the same pass. The arithmetic wraps (uint64),
// so the kSubtract call with the same arguments restores acc exactly whatever T_i was, even
// garbage from the fast rounding of a value outside its range or of a NaN.
template <bool kFast, bool kDiff, bool kSubtract>
MaxBits AddKernel(uint64_t* __restrict acc, const float* __restrict plus,
                  const float* __restrict minus, int64_t n, double ws) {
  uint32_t max_p = 0, max_m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits_p = std::bit_cast<uint32_t>(plus[i]) & kAbsMask;
    max_p = bits_p > max_p ? bits_p : max_p;
    const double xp = ws * static_cast<double>(plus[i]);
    uint64_t term = RoundToUnits<kFast>(xp);
    if constexpr (kDiff) {
      const uint32_t bits_m = std::bit_cast<uint32_t>(minus[i]) & kAbsMask;
      max_m = bits_m > max_m ? bits_m : max_m;
      const double xm = ws * static_cast<double>(minus[i]);
      term -= RoundToUnits<kFast>(xm);
    }
    if constexpr (kSubtract) {
      acc[i] -= term;
    } else {
      acc[i] += term;
    }
  }
  return {max_p, max_m};
}

template <bool kFast, bool kSubtract>
MaxBits AddChunkAs(uint64_t* acc, const float* plus, const float* minus, int64_t n, double ws) {
  return minus == nullptr ? AddKernel<kFast, false, kSubtract>(acc, plus, nullptr, n, ws)
                          : AddKernel<kFast, true, kSubtract>(acc, plus, minus, n, ws);
}

MaxBits AddChunk(bool fast, bool subtract, uint64_t* acc, const float* plus, const float* minus,
                 int64_t n, double ws) {
  if (fast) {
    return subtract ? AddChunkAs<true, true>(acc, plus, minus, n, ws)
                    : AddChunkAs<true, false>(acc, plus, minus, n, ws);
  }
  return subtract ? AddChunkAs<false, true>(acc, plus, minus, n, ws)
                  : AddChunkAs<false, false>(acc, plus, minus, n, ws);
}

// out[i] = float(out[i] + s·a[i]); with kClear also a[i] = 0 (the cache line is already here).
template <bool kFast, bool kClear>
void ReadKernel(float* __restrict out,
                std::conditional_t<kClear, int64_t, const int64_t>* __restrict a, int64_t n,
                double s) {
  for (int64_t i = 0; i < n; ++i) {
    const double t = s * UnitsToDouble<kFast>(a[i]);
    out[i] = static_cast<float>(static_cast<double>(out[i]) + t);
    if constexpr (kClear) a[i] = 0;
  }
}

template <bool kClear>
void ReadChunk(bool fast, float* out, std::conditional_t<kClear, int64_t, const int64_t>* a,
               int64_t n, double s) {
  if (fast) {
    ReadKernel<true, kClear>(out, a, n, s);
  } else {
    ReadKernel<false, kClear>(out, a, n, s);
  }
}

template <bool kFast>
void ReadKernel2(float* __restrict out, const int64_t* __restrict a, double sa,
                 const int64_t* __restrict b, double sb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double ta = sa * UnitsToDouble<kFast>(a[i]);
    const double tb = sb * UnitsToDouble<kFast>(b[i]);
    const double t = ta + tb;
    out[i] = static_cast<float>(static_cast<double>(out[i]) + t);
  }
}

// Runs f(c) for every chunk c, in parallel inside `arena` when there is one. Isolation keeps a
// thread that waits here from running unrelated tasks of the arena (which might block on a lock
// our caller holds).
template <typename F>
void ForEachChunk(tbb::task_arena* arena, int64_t num_chunks, const F& f) {
  if (arena == nullptr || num_chunks <= 1) {
    for (int64_t c = 0; c < num_chunks; ++c) f(c);
    return;
  }
  arena->execute([&] {
    tbb::this_task_arena::isolate([&] {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, num_chunks, 1),
                        [&](const tbb::blocked_range<int64_t>& r) {
                          for (int64_t c = r.begin(); c < r.end(); ++c) f(c);
                        });
    });
  });
}

// Units needed for |ws|·max|v|, rounded up; -1 if that passes the bound limit (or is NaN).
int64_t ContributionUnits(double abs_ws, uint32_t max_abs_bits) {
  const double c = abs_ws * static_cast<double>(std::bit_cast<float>(max_abs_bits));
  if (!(c <= kBoundLimitDouble)) return -1;
  return static_cast<int64_t>(std::ceil(c));
}

int64_t FirstNonFinite(absl::Span<const float> v, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    if (!std::isfinite(v[i])) return i;
  }
  return -1;
}

}  // namespace

FixedPointAccumulator::FixedPointAccumulator(int64_t size, tbb::task_arena* arena)
    : units_(size, 0), bounds_((size + kChunkSize - 1) / kChunkSize, 0), arena_(arena) {
  FEDCL_CHECK(size >= 0) << "accumulator size " << size;
}

absl::Status FixedPointAccumulator::Add(absl::Span<const float> values, double weight) {
  return AddTerms(values, {}, weight);
}

absl::Status FixedPointAccumulator::Subtract(absl::Span<const float> values, double weight) {
  return AddTerms(values, {}, -weight);
}

absl::Status FixedPointAccumulator::AddDifference(absl::Span<const float> plus,
                                                  absl::Span<const float> minus, double weight) {
  if (!minus.empty() && minus.size() != units_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("subtracted vector has ", minus.size(),
                                                   " elements, the accumulator ", size()));
  }
  return AddTerms(plus, minus, weight);
}

absl::Status FixedPointAccumulator::AddTerms(absl::Span<const float> plus,
                                             absl::Span<const float> minus, double weight) {
  if (plus.size() != units_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("added vector has ", plus.size(), " elements, the accumulator ", size()));
  }
  if (!std::isfinite(weight)) {
    return absl::InvalidArgumentError(absl::StrCat("weight is not finite: ", weight));
  }
  const double ws = std::ldexp(weight, kFractionBits);
  const double abs_ws = std::fabs(ws);
  const float* minus_data = minus.empty() ? nullptr : minus.data();
  uint64_t* units = reinterpret_cast<uint64_t*>(units_.data());
  std::vector<Outcome> outcome(num_chunks(), kUntouched);
  std::vector<MaxBits> max_bits(num_chunks());
  std::vector<int64_t> added(num_chunks(), 0);
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t n = std::min(kChunkSize, size() - begin);
    uint64_t* acc = units + begin;
    const float* p = plus.data() + begin;
    const float* m = minus_data ? minus_data + begin : nullptr;
    // One pass over the chunk: add optimistically on the fast path while finding max|v|, then
    // judge. Undo (exact, see AddKernel) if the chunk is refused or needed the scalar path.
    const MaxBits bits = AddChunk(/*fast=*/true, /*subtract=*/false, acc, p, m, n, ws);
    max_bits[c] = bits;
    const int64_t up = ContributionUnits(abs_ws, bits.plus);
    const int64_t um = ContributionUnits(abs_ws, bits.minus);
    const int64_t headroom = kBoundLimit - bounds_[c];
    Outcome o = kAddedFast;
    if (bits.plus >= kInfBits || bits.minus >= kInfBits) {
      o = kNonFinite;
    } else if (up < 0 || um < 0 || up > headroom || um > headroom - up) {
      o = kOverflow;
    } else if (up >= kFastLimit || um >= kFastLimit) {
      o = kAddedSlow;
    }
    if (o != kAddedFast) AddChunk(/*fast=*/true, /*subtract=*/true, acc, p, m, n, ws);
    if (o == kAddedSlow) AddChunk(/*fast=*/false, /*subtract=*/false, acc, p, m, n, ws);
    if (o == kAddedFast || o == kAddedSlow) {
      bounds_[c] += up + um;
      added[c] = up + um;
    }
    outcome[c] = o;
  });

  const auto first_failed =
      std::find_if(outcome.begin(), outcome.end(), [](Outcome o) { return o == kNonFinite; });
  const auto first_overflow = std::find(outcome.begin(), outcome.end(), kOverflow);
  if (first_failed == outcome.end() && first_overflow == outcome.end()) return absl::OkStatus();

  // Some chunk was refused: take the added ones back out.
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    if (outcome[c] != kAddedFast && outcome[c] != kAddedSlow) return;
    const int64_t begin = c * kChunkSize;
    const int64_t n = std::min(kChunkSize, size() - begin);
    AddChunk(outcome[c] == kAddedFast, /*subtract=*/true, units + begin, plus.data() + begin,
             minus_data ? minus_data + begin : nullptr, n, ws);
    bounds_[c] -= added[c];
  });

  if (first_failed != outcome.end()) {
    const int64_t c = first_failed - outcome.begin();
    const int64_t begin = c * kChunkSize;
    const int64_t end = std::min(begin + kChunkSize, size());
    int64_t i = FirstNonFinite(plus, begin, end);
    if (i >= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("added vector: element ", i, " is not finite (", plus[i], ")"));
    }
    i = FirstNonFinite(minus, begin, end);
    return absl::InvalidArgumentError(
        absl::StrCat("subtracted vector: element ", i, " is not finite (", minus[i], ")"));
  }
  const int64_t c = first_overflow - outcome.begin();
  const int64_t begin = c * kChunkSize;
  const int64_t end = std::min(begin + kChunkSize, size());
  return absl::OutOfRangeError(absl::StrCat(
      "fixed-point sum would overflow in elements [", begin, ", ", end, "): |weight| ",
      std::fabs(weight), " × (max|added| ", std::bit_cast<float>(max_bits[c].plus),
      " + max|subtracted| ", std::bit_cast<float>(max_bits[c].minus), ") on top of a bound of ",
      static_cast<double>(bounds_[c]) * kResolution, " passes the capacity ", kCapacity));
}

absl::Status FixedPointAccumulator::CheckCanAddAccumulator(
    const FixedPointAccumulator& other) const {
  if (other.size() != size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("accumulator of ", other.size(), " elements added to one of ", size()));
  }
  for (int64_t c = 0; c < num_chunks(); ++c) {
    if (other.bounds_[c] > kBoundLimit - bounds_[c]) {
      return absl::OutOfRangeError(absl::StrCat(
          "fixed-point sum would overflow in elements [", c * kChunkSize, ", ",
          std::min((c + 1) * kChunkSize, size()), "): bounds ",
          static_cast<double>(bounds_[c]) * kResolution, " + ",
          static_cast<double>(other.bounds_[c]) * kResolution, " pass the capacity ", kCapacity));
    }
  }
  return absl::OkStatus();
}

absl::Status FixedPointAccumulator::AddAccumulator(const FixedPointAccumulator& other) {
  FEDCL_RETURN_IF_ERROR(CheckCanAddAccumulator(other));
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t end = std::min(begin + kChunkSize, size());
    int64_t* __restrict dst = units_.data();
    const int64_t* __restrict src = other.units_.data();
    for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
    bounds_[c] += other.bounds_[c];
  });
  return absl::OkStatus();
}

absl::Status FixedPointAccumulator::CheckRead(absl::Span<float> out, double scale) const {
  if (out.size() != units_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output has ", out.size(), " elements, the accumulator ", size()));
  }
  if (!std::isfinite(scale)) {
    return absl::InvalidArgumentError(absl::StrCat("read scale is not finite: ", scale));
  }
  return absl::OkStatus();
}

absl::Status FixedPointAccumulator::ReadInto(absl::Span<float> out, double scale) const {
  FEDCL_RETURN_IF_ERROR(CheckRead(out, scale));
  const double s = std::ldexp(scale, -kFractionBits);
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t n = std::min(kChunkSize, size() - begin);
    ReadChunk<false>(bounds_[c] < kFastLimit, out.data() + begin, units_.data() + begin, n, s);
  });
  return absl::OkStatus();
}

absl::Status FixedPointAccumulator::DrainInto(absl::Span<float> out, double scale) {
  FEDCL_RETURN_IF_ERROR(CheckRead(out, scale));
  const double s = std::ldexp(scale, -kFractionBits);
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t n = std::min(kChunkSize, size() - begin);
    ReadChunk<true>(bounds_[c] < kFastLimit, out.data() + begin, units_.data() + begin, n, s);
    bounds_[c] = 0;
  });
  return absl::OkStatus();
}

absl::Status FixedPointAccumulator::ReadCombinationInto(absl::Span<float> out,
                                                        const FixedPointAccumulator& a,
                                                        double scale_a,
                                                        const FixedPointAccumulator& b,
                                                        double scale_b) {
  if (a.size() != b.size() || out.size() != a.units_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("output of ", out.size(),
                                                   " elements read from accumulators of ", a.size(),
                                                   " and ", b.size()));
  }
  if (!std::isfinite(scale_a) || !std::isfinite(scale_b)) {
    return absl::InvalidArgumentError(
        absl::StrCat("read scales are not finite: ", scale_a, ", ", scale_b));
  }
  const double sa = std::ldexp(scale_a, -kFractionBits);
  const double sb = std::ldexp(scale_b, -kFractionBits);
  ForEachChunk(a.arena_, a.num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t n = std::min(kChunkSize, a.size() - begin);
    float* dst = out.data() + begin;
    const int64_t* ua = a.units_.data() + begin;
    const int64_t* ub = b.units_.data() + begin;
    if (a.bounds_[c] < kFastLimit && b.bounds_[c] < kFastLimit) {
      ReadKernel2<true>(dst, ua, sa, ub, sb, n);
    } else {
      ReadKernel2<false>(dst, ua, sa, ub, sb, n);
    }
  });
  return absl::OkStatus();
}

void FixedPointAccumulator::Clear() {
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t end = std::min(begin + kChunkSize, size());
    std::fill(units_.begin() + begin, units_.begin() + end, 0);
    bounds_[c] = 0;
  });
}

void FixedPointAccumulator::Tighten() {
  ForEachChunk(arena_, num_chunks(), [&](int64_t c) {
    const int64_t begin = c * kChunkSize;
    const int64_t end = std::min(begin + kChunkSize, size());
    uint64_t m = 0;
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t u = static_cast<uint64_t>(units_[i]);
      const uint64_t abs = units_[i] < 0 ? ~u + 1 : u;
      m = abs > m ? abs : m;
    }
    bounds_[c] = std::min(bounds_[c], static_cast<int64_t>(m));
  });
}

int64_t FixedPointAccumulator::memory_bytes() const {
  return static_cast<int64_t>(units_.capacity() * sizeof(int64_t) +
                              bounds_.capacity() * sizeof(int64_t));
}

}  // namespace fedcl::fl
