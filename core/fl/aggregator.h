// Server-side aggregation of one pooled module: the update rules of algorithms.md §1.4 and §1.7
// (FedAU and its baselines), applied to the module's flat float32 parameter vector.
//
//   fl::AggregatorOptions options;                      // FedAU ("adaptive"), K = ∞, γ = 1
//   auto aggregator = fl::ModuleAggregator::Create(options, module_size, &arena);
//   aggregator->BeginRound(t);
//   // from any RPC thread, once per accepted update:
//   FEDCL_RETURN_IF_ERROR(aggregator->Fold(client, delta, fl::FedAuWeightAt(state, t, K)));
//   // at the close:
//   FEDCL_RETURN_IF_ERROR(aggregator->FinishRound(participants, enrolled, params));
//
// Server updates, with S_t the round's participants, N the enrolled clients, Δ_n a delta:
//   adaptive               x += γ·(1/N)·Σ_{S_t} ω_n·Δ_n        ω_n: FedAU weight
//   (fedau_estimator.h) known_prob             x += γ·(1/N)·Σ_{S_t} Δ_n/p_n average_participating
//   x += γ·(1/|S_t|)·Σ_{S_t} Δ_n       (no change if S_t is empty) average_all            x +=
//   γ·(1/N)·Σ_{S_t} Δ_n fedvarp                v = (1/|S_t|)·Σ_{S_t}(Δ_n − y_n) + (1/N)·Σ_{all j}
//   y_j (before the
//                          round); y_n ← Δ_n for n ∈ S_t; x += γ·v. Reference-code quirk kept:
//                          v = 0 when S_t is empty (the stored mean is not applied).
//   mifa                   y_n ← Δ_n for n ∈ S_t; x += γ·(1/N)·Σ_{all j} y_j, applied every round,
//                          also when S_t is empty.
// y_n starts at 0 for a client never seen. Every sum goes through a FixedPointAccumulator, so a
// round's result is bit-for-bit independent of the order in which updates arrive and of the
// arena's thread count; and the per-client vectors determine Σ y_j exactly, so exporting them
// and importing them into a fresh aggregator continues bit-identically.
//
// Memory: the FedAU family holds one int64 sum per parameter (8·d bytes), whatever N is.
// FedVARP and MIFA hold one float vector per client ever folded (4·d·N bytes) plus their sums;
// that O(N·d) cost is what they are (memory_bytes() reports it).
#ifndef FEDCL_CORE_FL_AGGREGATOR_H_
#define FEDCL_CORE_FL_AGGREGATOR_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/fl/fedau_estimator.h"
#include "core/fl/fixed_point_accumulator.h"
#include "core/fl/round_types.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {

// The aggregation rules, named as the reference code's `-weighting` values (§1.7).
enum class AggregatorKind {
  kAdaptive,              // "adaptive": FedAU
  kKnownProb,             // "known_prob": FedAvg weighted by the known 1/p_n
  kAverageParticipating,  // "average_participating"
  kAverageAll,            // "average_all"
  kFedVarp,               // "fedvarp"
  kMifa,                  // "mifa"
};

// "adaptive", "known_prob", ... as above.
absl::string_view AggregatorKindName(AggregatorKind kind);
// The inverse of AggregatorKindName; InvalidArgument listing the valid names otherwise.
absl::StatusOr<AggregatorKind> ParseAggregatorKind(absl::string_view name);

// True for the kinds whose Fold weight is a per-client factor (adaptive: the FedAU weight ω_n;
// known_prob: 1/p_n); the other kinds take weight 1.
bool AggregatorUsesClientWeight(AggregatorKind kind);

struct AggregatorOptions {
  AggregatorKind kind = AggregatorKind::kAdaptive;
  // γ, the server (global) learning rate; finite and > 0. The reference runs use 1, except
  // average_participating (1.78) and average_all (10) (§1.8).
  double global_learning_rate = 1.0;
  // FedAU cutoff K (adaptive only; ignored by the others); >= 0, 0 (kFedAuNoCutoff) = ∞.
  int64_t fedau_cutoff = kFedAuNoCutoff;

  // InvalidArgument naming the field that is out of range.
  absl::Status Validate() const;
};

// Per-client vectors of FedVARP and MIFA (y_n), sorted by client id.
using ClientVectors = std::vector<std::pair<ClientId, std::vector<float>>>;

// The aggregate of one module of `size` floats over rounds. A round is BeginRound, any number of
// Folds (at most one per client), FinishRound.
//
// Thread-safe: every method may be called from any thread. Folds are serialised by an internal
// mutex; each one adds its vector in parallel chunks on the arena.
class ModuleAggregator {
 public:
  // `options` must be valid (Validate() OK) and `size` >= 0; both are checked. `arena` (not
  // owned; null = the calling thread only) must outlive the aggregator.
  static std::unique_ptr<ModuleAggregator> Create(const AggregatorOptions& options, int64_t size,
                                                  tbb::task_arena* arena);

  ModuleAggregator(const ModuleAggregator&) = delete;
  ModuleAggregator& operator=(const ModuleAggregator&) = delete;

  AggregatorKind kind() const { return options_.kind; }
  int64_t size() const { return size_; }

  // Opens round `round`. Rounds must increase, and the previous round must have been finished
  // (or have had no Fold): both are caller invariants and checked.
  void BeginRound(int64_t round);

  // Folds `client`'s delta for the open round. The caller has validated it (right size, finite;
  // both are checked again here at no extra pass) and supplies `weight`:
  //   adaptive: the FedAU weight ω_n read for this round (FedAuWeightAt);
  //   known_prob: 1/p_n;
  //   average_participating, average_all, fedvarp, mifa: exactly 1 (a clipped update is scaled
  //     in its values, not through the weight).
  // FedVARP and MIFA copy the delta as the client's new y_n.
  // Errors, aggregator unchanged: FailedPrecondition if no round is open; AlreadyExists if
  // `client` already folded in this round; InvalidArgument for a wrong size, a non-finite value,
  // or a weight that is not finite and > 0 (or not 1 where 1 is required); OutOfRange if the
  // fixed-point sum would overflow (see fixed_point_accumulator.h; needs |weight·Δ| of order 1e7).
  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight);

  // Applies the round's server update to `params` (this module's flat parameters, `size` floats)
  // and closes the round. `participants` is |S_t| as the caller counts it (clients whose update
  // of this module was accepted; at least the number folded), `enrolled` is N. A rule that
  // divides by N needs N >= 1 whenever it changes something.
  // Errors, with params and the aggregator unchanged and the round still open:
  // FailedPrecondition if no round is open; InvalidArgument for a wrong params size,
  // participants below the number of clients folded, or N = 0 where N divides; OutOfRange if
  // FedVARP's Σ y_j would overflow.
  absl::Status FinishRound(int64_t participants, int64_t enrolled, absl::Span<float> params);

  // FedVARP and MIFA: the stored y_n, sorted by client (empty for the other kinds). Meant
  // between rounds (after FinishRound): during a round the vectors of clients already folded are
  // this round's deltas.
  ClientVectors ExportMemory() const;

  // Replaces the stored y_n with `memory` (e.g. loaded after a restart) and recomputes Σ y_j
  // from it, which gives exactly the state of the aggregator that exported it.
  // Errors, aggregator unchanged: FailedPrecondition while a round has folds; InvalidArgument for
  // vectors given to a kind that keeps none, a vector of the wrong size or with a non-finite
  // value, or a client listed twice; OutOfRange if Σ y_j would overflow.
  absl::Status ImportMemory(const ClientVectors& memory);

  // FedVARP and MIFA: drops `client`'s y_n (e.g. when it is revoked and no longer counts in N).
  // No-op for other kinds and for a client with nothing stored. FailedPrecondition if `client`
  // folded in the open round; OutOfRange if the subtraction would overflow (never in practice).
  absl::Status ForgetClient(ClientId client);

  // Heap bytes held: the sums, and for FedVARP/MIFA the per-client vectors.
  int64_t memory_bytes() const;

 private:
  ModuleAggregator(const AggregatorOptions& options, int64_t size, tbb::task_arena* arena);
  bool keeps_client_vectors() const {
    return options_.kind == AggregatorKind::kFedVarp || options_.kind == AggregatorKind::kMifa;
  }
  absl::Status CheckWeight(double weight) const;
  absl::Status CheckFinish(int64_t participants, int64_t enrolled, absl::Span<float> params) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyUpdate(int64_t participants, int64_t enrolled, absl::Span<float> params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AggregatorOptions options_;
  const int64_t size_;
  tbb::task_arena* const arena_;

  mutable absl::Mutex mu_;
  bool round_open_ ABSL_GUARDED_BY(mu_) = false;
  int64_t round_ ABSL_GUARDED_BY(mu_) = -1;  // last round begun; -1 before the first
  absl::flat_hash_set<ClientId> folded_ ABSL_GUARDED_BY(mu_);
  // FedAU family: Σ_{S_t} w·Δ_n. FedVARP: Σ_{S_t} (Δ_n − y_n). MIFA: unused (size 0).
  FixedPointAccumulator round_sum_ ABSL_GUARDED_BY(mu_);
  // FedVARP: Σ_{all j} y_j as of the round's start. MIFA: Σ_{all j} y_j, current. Others: unused.
  FixedPointAccumulator memory_sum_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<ClientId, std::vector<float>> client_vectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_AGGREGATOR_H_
