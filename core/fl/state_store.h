// Where a Coordinator's durable state goes. The coordinator does no I/O itself: it calls these
// methods at the points where durability matters, and the host implements them (fedcl-server
// with SQLite and checkpoint files; tests and the in-process simulator with MemoryStateStore).
//
// The contract that makes `kill -9` safe:
//   - JournalUpdate returns only once the update is durable; the coordinator acknowledges an
//     update only after that, so an acknowledged update is never lost.
//   - RoundOpened records the round and its absolute deadline, so a restart resumes the round
//     with its original deadline.
//   - RoundClosed replaces the modules and the aggregators' memory, updates the records of the
//     round's participants (RoundClose::clients; every other record stays as it was) and the
//     pool counters of the round's expert contributors (RoundClose::pool_holders), in one
//     durable step, and drops that round's journal; a crash before it completes leaves the
//     previous round's state plus the journal, from which the round is replayed.
//   - The growing pool's registry (module_registry.h) is written as it changes: PoolProposal
//     before a proposal takes effect, PutPoolHolders before a client is first sent an expert.
//     A module founded since the last close lives only in the registry (with its founding
//     values) until the next RoundClosed lists it among the modules.
// Load returns what the last completed calls left. Implementations must be thread-safe:
// JournalUpdate is called from the threads submitting updates, concurrently with each other and
// with the other methods (which the coordinator calls under its own lock).
#ifndef FEDCL_CORE_FL_STATE_STORE_H_
#define FEDCL_CORE_FL_STATE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/fl/fedau_estimator.h"
#include "core/fl/module_registry.h"
#include "core/fl/round_types.h"
#include "core/nn/parameter_set.h"

namespace fedcl::fl {

struct ClientRecord {
  ClientId id = 0;
  int64_t enrolled_round = 0;
  bool revoked = false;
  FedAuClientState fedau;
  int64_t participations = 0;
  int64_t last_participation_round = -1;
};

struct RoundRecord {
  int64_t round = 0;
  absl::Time opened;
  absl::Time deadline;
};

// An accepted update, as needed to fold it again after a restart.
struct JournalEntry {
  int64_t round = 0;        // the round it was accepted into
  int64_t base_round = -1;  // the round it was trained for, if earlier (asynchronous); else -1
  ClientId client = 0;
  // The rule's client weight it was folded with. Its values are as folded: scaled by any
  // clipping factor and any staleness factor (asynchronous rounds).
  double weight = 0.0;
  bool clipped = false;
  int64_t num_samples = 0;
  int64_t local_steps = 0;
  double loss = 0.0;
  // The module deltas: names and, concatenated in that order, the values. A writer passes the
  // values as `views` into the update (no copy; valid during JournalUpdate) and leaves `values`
  // empty; Load fills `values`.
  std::vector<std::string> module_names;
  std::vector<float> values;
  std::vector<absl::Span<const float>> views;
};

// One pooled module's durable form.
struct StoredModule {
  ModuleSpec spec;
  int64_t version = 0;
  nn::ParameterSet values;
};

// Per-client vectors kept by memory-heavy aggregators (FedVARP, MIFA), per module.
using AggregatorMemory =
    std::map<std::string, std::vector<std::pair<ClientId, std::vector<float>>>>;

struct RoundClose {
  int64_t closed_round = 0;
  std::vector<StoredModule> modules;  // after the round's update
  // The records the round changed (its participants), in increasing id order; every other
  // client is as last written with PutClient or an earlier RoundClosed.
  std::vector<ClientRecord> clients;
  AggregatorMemory aggregator_memory;  // empty for the FedAU family
  // The (module, client) FedAU counters the round changed (its expert contributors), by module
  // then client.
  std::vector<PoolHolder> pool_holders;
  int64_t participants = 0;
  int64_t enrolled = 0;
};

// A proposal about to take effect: the module as it will be (inserted or replaced by id), the
// registry's counters afterwards, and the proposer's counter if it becomes a holder.
struct PoolProposalRecord {
  RegisteredModule module;
  int64_t next_id = 1;
  int64_t merges = 0;
  std::vector<PoolHolder> new_holders;
};

// Everything needed to resume.
struct StoredState {
  std::vector<StoredModule> modules;
  std::vector<ClientRecord> clients;
  AggregatorMemory aggregator_memory;
  int64_t last_closed_round = -1;         // -1: no round closed yet
  std::optional<RoundRecord> open_round;  // the round in progress, if any
  std::vector<JournalEntry> journal;      // accepted updates of the open round
  ModuleRegistryState pool;               // the growing pool's registry (empty without growth)
};

class StateStore {
 public:
  virtual ~StateStore() = default;
  // A client enrolled, left or was revoked outside a round close.
  virtual absl::Status PutClient(const ClientRecord& client) = 0;
  virtual absl::Status JournalUpdate(const JournalEntry& entry) = 0;
  // False if JournalUpdate records nothing (a store configured without a journal): the
  // coordinator then skips assembling entries.
  virtual bool journals() const { return true; }
  virtual absl::Status RoundOpened(const RoundRecord& round) = 0;
  virtual absl::Status RoundClosed(const RoundClose& close) = 0;
  // The pool's registry changes (see above); durable on return. A store that does not keep the
  // pool keeps these defaults, and a coordinator over it refuses to grow its pool.
  virtual absl::Status PoolProposal(const PoolProposalRecord& record) {
    return absl::UnimplementedError("this state store does not keep a growing module pool");
  }
  virtual absl::Status PutPoolHolders(absl::Span<const PoolHolder> holders) {
    return absl::UnimplementedError("this state store does not keep a growing module pool");
  }
  // The stored state; NotFound if the store has never been written (a fresh start).
  virtual absl::StatusOr<StoredState> Load() const = 0;
};

// Keeps everything in memory: for tests, and for in-process simulation where durability is moot.
// Copies what it is given, so Load after a simulated crash returns exactly what a durable store
// would.
class MemoryStateStore final : public StateStore {
 public:
  absl::Status PutClient(const ClientRecord& client) override;
  absl::Status JournalUpdate(const JournalEntry& entry) override;
  absl::Status RoundOpened(const RoundRecord& round) override;
  absl::Status RoundClosed(const RoundClose& close) override;
  absl::Status PoolProposal(const PoolProposalRecord& record) override;
  absl::Status PutPoolHolders(absl::Span<const PoolHolder> holders) override;
  absl::StatusOr<StoredState> Load() const override;

  // Fault injection: the next `count` JournalUpdate calls fail with Unavailable.
  void FailNextJournalWrites(int count);
  // Fault injection: the next `count` PoolProposal / PutPoolHolders calls fail with Unavailable.
  void FailNextPoolWrites(int count);
  int64_t journal_writes() const;

 private:
  void PutClientLocked(const ClientRecord& client) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutPoolHolderLocked(const PoolHolder& holder) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool written_ ABSL_GUARDED_BY(mu_) = false;
  StoredState state_ ABSL_GUARDED_BY(mu_);
  int journal_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int pool_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t journal_writes_ ABSL_GUARDED_BY(mu_) = 0;
  mutable absl::Mutex mu_;
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_STATE_STORE_H_
