// Per-client vectors y_n and their exact sum Σ_{all j} y_j, kept by FedVARP and MIFA (4·d·N
// bytes for the vectors plus 8·d for the sum: that O(N·d) cost is what these rules are).
// y_n starts at 0 for a client never seen. The vectors determine the sum exactly, so importing
// exported vectors into a fresh memory gives exactly the state that exported them.
#ifndef FEDCL_CORE_FL_RULES_CLIENT_MEMORY_H_
#define FEDCL_CORE_FL_RULES_CLIENT_MEMORY_H_

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/fixed_point_accumulator.h"

namespace fedcl::fl {

class ClientMemory {
 public:
  ClientMemory(int64_t size, tbb::task_arena* arena)
      : size_(size), arena_(arena), sum_(size, arena) {}

  // y_n, or an empty span for a client never seen.
  absl::Span<const float> Find(ClientId client) const;
  // y_n ← delta (the caller has already accounted for the change in the sums it keeps).
  void Store(ClientId client, absl::Span<const float> delta);
  bool empty() const { return vectors_.empty(); }

  // Σ y_j. MIFA moves it as vectors change; FedVARP adds a round's Σ(Δ_n − y_n) at the close.
  FixedPointAccumulator& sum() { return sum_; }
  const FixedPointAccumulator& sum() const { return sum_; }

  ClientVectors Export() const;  // sorted by client
  // Replaces everything by `memory` (see ModuleRuleState::ImportMemory for the errors).
  absl::Status Import(const ClientVectors& memory);
  // Drops y_n and subtracts it from the sum; no-op for a client never seen.
  absl::Status Forget(ClientId client);
  int64_t memory_bytes() const;

 private:
  const int64_t size_;
  tbb::task_arena* const arena_;
  FixedPointAccumulator sum_;
  absl::flat_hash_map<ClientId, std::vector<float>> vectors_;
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_RULES_CLIENT_MEMORY_H_
