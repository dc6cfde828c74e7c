// Server-side aggregation of one pooled module: the round bookkeeping around an aggregation
// rule's state (aggregation_rule.h; the rules themselves are in rules/, one file each).
//
//   FEDCL_ASSIGN_OR_RETURN(auto rule, fl::CreateAggregationRule({.name = "adaptive"}));
//   auto aggregator = fl::ModuleAggregator::Create(rule, module_size, &arena);
//   aggregator->BeginRound(t);
//   // from any RPC thread, once per accepted update:
//   FEDCL_RETURN_IF_ERROR(aggregator->Fold(client, delta, rule->ClientWeight(record, t)));
//   // at the close:
//   FEDCL_RETURN_IF_ERROR(aggregator->FinishRound(participants, enrolled, params));
//
// Server updates of the built-in rules, with S_t the round's participants, N the enrolled
// clients, Δ_n a delta:
//   adaptive               x += γ·(1/N)·Σ_{S_t} ω_n·Δ_n   (ω_n: FedAU weight, fedau_estimator.h)
//   known_prob             x += γ·(1/N)·Σ_{S_t} Δ_n/p_n
//   average_participating  x += γ·(1/|S_t|)·Σ_{S_t} Δ_n   (no change if S_t is empty)
//   average_all            x += γ·(1/N)·Σ_{S_t} Δ_n
//   fedvarp                v = (1/|S_t|)·Σ_{S_t}(Δ_n − y_n) + (1/N)·Σ_{all j} y_j (before the
//                          round); y_n ← Δ_n for n ∈ S_t; x += γ·v (v = 0 when S_t is empty)
//   mifa                   y_n ← Δ_n for n ∈ S_t; x += γ·(1/N)·Σ_{all j} y_j, every round
//   fedawe                 x = (1/|S_t|)·Σ_{S_t} w_n + γ·clip((1/|S_t|)·Σ_{S_t} τ_n·Δ_n, r), each
//                          client training from its own base w_n (rules/fedawe.cc)
//   fedadam                Reddi et al.'s server Adam on Δ̄ = (1/|S_t|)·Σ Δ_n (rules/fedadam.cc)
// Every sum goes through a FixedPointAccumulator, so a round's result is bit-for-bit independent
// of the order in which updates arrive and of the arena's thread count; and the rule's memory
// determines its sums exactly, so exporting it and importing it into a fresh aggregator continues
// bit-identically.
//
// Memory: the FedAU family holds one int64 sum per parameter (8·d bytes), whatever N is.
// FedVARP and MIFA hold one float vector per client ever folded (4·d·N bytes) plus their sums;
// that O(N·d) cost is what they are (memory_bytes() reports it). FedAWE holds one float vector
// per base version still in use, at most min(N, rounds) of them, plus its echo sum.
#ifndef FEDCL_CORE_FL_AGGREGATOR_H_
#define FEDCL_CORE_FL_AGGREGATOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/round_types.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {

// The aggregate of one module of `size` floats over rounds. A round is BeginRound, any number of
// Folds (at most one per client), FinishRound.
//
// Thread-safe: every method may be called from any thread. Folds are serialised by an internal
// mutex; each one adds its vector in parallel chunks on the arena.
class ModuleAggregator {
 public:
  // `rule` must not be null and `size` >= 0; both are checked. `arena` (not owned; null = the
  // calling thread only) must outlive the aggregator.
  static std::unique_ptr<ModuleAggregator> Create(std::shared_ptr<const AggregationRule> rule,
                                                  int64_t size, tbb::task_arena* arena);
  // The same for a rule built from `config`, which must be valid (checked): for tests and tools.
  static std::unique_ptr<ModuleAggregator> Create(const RuleConfig& config, int64_t size,
                                                  tbb::task_arena* arena);

  ModuleAggregator(const ModuleAggregator&) = delete;
  ModuleAggregator& operator=(const ModuleAggregator&) = delete;

  const AggregationRule& rule() const { return *rule_; }
  int64_t size() const { return size_; }

  // Opens round `round`. Rounds must increase, and the previous round must have been finished
  // (or have had no Fold): both are caller invariants and checked.
  void BeginRound(int64_t round);

  // Folds `client`'s delta for the open round with `weight`: the rule's ClientWeight for a
  // weighted rule (FedAU: ω_n read for this round; known_prob: 1/p_n), exactly 1 otherwise (a
  // clipped update is scaled in its values, not through the weight).
  // Errors, aggregator unchanged: FailedPrecondition if no round is open; AlreadyExists if
  // `client` already folded in this round; InvalidArgument for a wrong size, a non-finite value,
  // or a weight the rule does not take; OutOfRange if the fixed-point sum would overflow (see
  // fixed_point_accumulator.h; needs |weight·Δ| of order 1e7).
  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight);

  // Applies the round's server update to `params` (this module's flat parameters, `size` floats)
  // and closes the round. `participants` is |S_t| as the caller counts it (clients whose update
  // of this module was accepted; at least the number folded), `enrolled` is N. A rule that
  // divides by N needs N >= 1 whenever it changes something.
  // Errors, with params and the aggregator unchanged and the round still open:
  // FailedPrecondition if no round is open; InvalidArgument for a wrong params size,
  // participants below the number of clients folded, or N = 0 where N divides; OutOfRange if a
  // sum would overflow.
  absl::Status FinishRound(int64_t participants, int64_t enrolled, absl::Span<float> params);

  // The rule's memory (per-client vectors of FedVARP and MIFA, a server optimiser's state),
  // sorted by key; empty for rules that keep none. Meant between rounds (after FinishRound).
  ClientVectors ExportMemory() const;

  // Replaces the rule's memory with `memory` (e.g. loaded after a restart), which gives exactly
  // the state of the aggregator that exported it.
  // Errors, aggregator unchanged: FailedPrecondition while a round has folds; those of
  // ModuleRuleState::ImportMemory.
  absl::Status ImportMemory(const ClientVectors& memory);

  // Drops `client`'s per-client memory (e.g. when it is revoked and no longer counts in N).
  // No-op for rules without and for a client with nothing stored. FailedPrecondition if `client`
  // folded in the open round.
  absl::Status ForgetClient(ClientId client);

  // Rules whose clients train from bases of their own (AggregationRule::
  // trains_from_client_base): `client`'s base version, nullopt for the current module; and the
  // values of a version that is some client's base, null otherwise.
  std::optional<int64_t> ClientBaseVersion(ClientId client) const;
  std::shared_ptr<const std::vector<float>> BaseValues(int64_t version) const;
  // ModuleRuleState::MeanClientBase.
  std::vector<float> MeanClientBase(int64_t clients, absl::Span<const float> current) const;

  // Heap bytes held: the rule's sums and memory, and the round's folded set.
  int64_t memory_bytes() const;

 private:
  ModuleAggregator(std::shared_ptr<const AggregationRule> rule, int64_t size,
                   tbb::task_arena* arena);

  const std::shared_ptr<const AggregationRule> rule_;
  const int64_t size_;

  mutable absl::Mutex mu_;
  bool round_open_ ABSL_GUARDED_BY(mu_) = false;
  int64_t round_ ABSL_GUARDED_BY(mu_) = -1;  // last round begun; -1 before the first
  absl::flat_hash_set<ClientId> folded_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ModuleRuleState> state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_AGGREGATOR_H_
