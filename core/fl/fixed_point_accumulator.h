// An order-independent sum of weighted float vectors.
//
// Each element is an int64 count of units of 2^-36. Adding w·v rounds w·v to the nearest unit
// (ties to even) once, then adds integers, and integer addition is associative: the sum is
// bit-for-bit the same whatever the arrival order of the vectors, however many threads split
// them, and whether they were added one by one or through partial accumulators. This is what
// makes a round's aggregate independent of which client's update arrived first.
//
//   fl::FixedPointAccumulator sum(module_size, &arena);      // or nullptr: calling thread only
//   FEDCL_RETURN_IF_ERROR(sum.Add(delta_a, weight_a));       // in any order, from any thread
//   FEDCL_RETURN_IF_ERROR(sum.Add(delta_b, weight_b));       //   (serialised by the caller)
//   FEDCL_RETURN_IF_ERROR(sum.ReadInto(params, gamma / n));  // params += gamma / n · Σ w·v
//   sum.Clear();                                             // (or both at once: DrainInto)
//
// Scale. 2^-36 ≈ 1.5e-11 per unit; an element holds up to ±2^63 units = ±2^27 ≈ 1.3e8, of
// which the overflow rule below lets 2^62 units (6.7e7) be used. Each added term is off by at
// most half a unit (7.3e-12 absolute), far below a float32 ulp of any parameter the sum is
// applied to after dividing by N (a parameter of 1e-2 has an ulp of 9e-10); and 6.7e7 leaves room
// for thousands of clients with weights in the hundreds and deltas of order 1 to 100. A finer
// scale would shrink that room by 2 per bit for precision nobody can see in float32.
//
// Overflow rule. The vector is cut into chunks of kChunkSize elements (fixed: it does not depend
// on the thread count, so neither does any decision below). Each chunk keeps a bound B_c, in
// units, on |element| for every element of the chunk: Add(v, w) raises B_c by |w|·max_{i∈c}|v_i|
// (rounded up), and is refused if any chunk would pass 2^62 units. A refused Add leaves the
// accumulator exactly as it was (chunks already added are subtracted again; integer arithmetic
// makes that exact). Bounds only grow with adds, including subtractions; Tighten() resets each
// B_c to the chunk's actual max|element|, for sums that live across many rounds (MIFA's Σ y_j).
// The caller passes nothing extra: max|v| is found by the loop that adds, which also rejects NaN
// and infinities.
//
// Speed. A fold is memory-bound (read 4 bytes of float, read and write 8 bytes of int64 per
// element), so each chunk is visited once: the vectorised loop adds optimistically while it finds
// max|v|, then the chunk is judged, and a chunk that is refused (or needs the scalar path) is
// subtracted again with the same wrapping arithmetic, which restores it exactly. Rounding uses
// the 1.5·2^52 "magic number" trick, exact when |w|·max|v| < 2^15 in the chunk, because AVX2 has
// no double → int64 conversion; chunks with larger terms take a scalar llrint path that rounds
// identically. This runs at the speed of a plain double axpy over the same bytes
// (tests/bench/fold_benchmark.cc). Both paths assume the default floating-point rounding mode;
// the source is compiled without FMA contraction, so x86-64-v3 and portable builds give the same
// bits.
//
// Threading: every pass runs over chunks with oneTBB inside the arena given at construction
// (isolated, so a caller that is itself a task of that arena cannot pick up unrelated work while
// holding its locks); a null arena runs everything on the calling thread. The object is not
// thread-safe: concurrent mutation must be serialised by the caller; const methods may run
// concurrently with each other.
#ifndef FEDCL_CORE_FL_FIXED_POINT_ACCUMULATOR_H_
#define FEDCL_CORE_FL_FIXED_POINT_ACCUMULATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "tbb/cache_aligned_allocator.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {

class FixedPointAccumulator {
 public:
  // One unit is 2^-kFractionBits.
  static constexpr int kFractionBits = 36;
  static constexpr double kResolution = 0x1p-36;
  // Largest |element| the overflow rule admits, in value (2^62 units).
  static constexpr double kCapacity = 0x1p26;
  // Elements per chunk: the unit of parallel work and of overflow bookkeeping. 16384 int64 are
  // 128 KiB, so a chunk's delta and sums stay in L2 between the max pass and the add pass.
  static constexpr int64_t kChunkSize = 16384;

  // A zero sum of `size` elements. `arena` (not owned, may be null) must outlive the object.
  explicit FixedPointAccumulator(int64_t size = 0, tbb::task_arena* arena = nullptr);

  FixedPointAccumulator(const FixedPointAccumulator&) = default;
  FixedPointAccumulator& operator=(const FixedPointAccumulator&) = default;
  FixedPointAccumulator(FixedPointAccumulator&&) = default;
  FixedPointAccumulator& operator=(FixedPointAccumulator&&) = default;

  int64_t size() const { return static_cast<int64_t>(units_.size()); }
  tbb::task_arena* arena() const { return arena_; }

  // sum += weight · values, each product rounded to the nearest unit.
  // Errors, accumulator unchanged: InvalidArgument if values.size() != size(), weight is not
  // finite, or a value is NaN or infinite (naming its index); OutOfRange if a chunk's bound would
  // pass the capacity (naming the chunk's elements and the bound).
  absl::Status Add(absl::Span<const float> values, double weight);

  // sum −= weight · values; exactly undoes Add(values, weight). Errors as Add.
  absl::Status Subtract(absl::Span<const float> values, double weight);

  // sum += weight · plus − weight · minus, each product rounded separately, so this is exactly
  // Add(plus, weight) followed by Subtract(minus, weight) but atomic (both or neither) and in one
  // pass. `minus` may be empty (then it is Add). Errors as Add.
  absl::Status AddDifference(absl::Span<const float> plus, absl::Span<const float> minus,
                             double weight);

  // sum += other's sum (exact), bounds add up. Errors, accumulator unchanged: InvalidArgument
  // for a different size; OutOfRange if a chunk's bound would pass the capacity.
  absl::Status AddAccumulator(const FixedPointAccumulator& other);
  // The check AddAccumulator makes, without adding.
  absl::Status CheckCanAddAccumulator(const FixedPointAccumulator& other) const;

  // out[i] = float(double(out[i]) + scale · sum[i]), in double, rounded to float once.
  // InvalidArgument (out untouched) if out.size() != size() or scale is not finite.
  absl::Status ReadInto(absl::Span<float> out, double scale) const;

  // ReadInto(out, scale) then Clear(), in one pass over the sum (what closing a round needs).
  // Errors as ReadInto, with nothing changed.
  absl::Status DrainInto(absl::Span<float> out, double scale);

  // out[i] = float(double(out[i]) + (scale_a · a[i] + scale_b · b[i])), one pass, one rounding
  // to float. Runs in a's arena. InvalidArgument (out untouched) for mismatched sizes or scales
  // that are not finite.
  static absl::Status ReadCombinationInto(absl::Span<float> out, const FixedPointAccumulator& a,
                                          double scale_a, const FixedPointAccumulator& b,
                                          double scale_b);

  // Sets the sum and every bound to zero.
  void Clear();

  // Resets each chunk's bound to the chunk's actual max|element| (never raises a bound).
  void Tighten();

  // The sum in units (exact), and one element as a double (for tests and diagnostics).
  absl::Span<const int64_t> units() const { return units_; }
  double value(int64_t i) const { return static_cast<double>(units_[i]) * kResolution; }
  // The overflow bound of the chunk holding element i, in value.
  double bound_at(int64_t i) const {
    return static_cast<double>(bounds_[i / kChunkSize]) * kResolution;
  }

  // Heap bytes held: the sums and the bounds.
  int64_t memory_bytes() const;

 private:
  absl::Status CheckRead(absl::Span<float> out, double scale) const;
  absl::Status AddTerms(absl::Span<const float> plus, absl::Span<const float> minus, double weight);
  int64_t num_chunks() const { return static_cast<int64_t>(bounds_.size()); }

  std::vector<int64_t, tbb::cache_aligned_allocator<int64_t>> units_;
  std::vector<int64_t> bounds_;  // per chunk, in units, <= 2^62
  tbb::task_arena* arena_ = nullptr;
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_FIXED_POINT_ACCUMULATOR_H_
