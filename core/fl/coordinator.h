// The server side of federated learning, without any transport: client registry, the round
// state machine, the module pool with versions, update validation and streaming aggregation.
// fedcl-server puts it behind gRPC; fedcl-sim drives it directly. Both run this same code.
//
//   fl::CoordinatorOptions options;                       // FedAU, 30 s rounds, plain SGD recipe
//   FEDCL_ASSIGN_OR_RETURN(auto coordinator,
//                          fl::Coordinator::Create(options, clock, &store, initial_modules));
//   FEDCL_RETURN_IF_ERROR(coordinator->Enroll(7).status());
//   FEDCL_ASSIGN_OR_RETURN(fl::WorkAssignment work, coordinator->GetWork(7, held_versions));
//   ... the device trains and sends one delta per module ...
//   FEDCL_ASSIGN_OR_RETURN(fl::SubmitResult result, coordinator->Submit(update));
//   FEDCL_RETURN_IF_ERROR(coordinator->Tick());        // closes the round at its deadline
//
// Rounds. When a round closes is the round policy's (round_policy.h, options.round): by default
// (deadline_quota) round t opens with a deadline (now + round_duration) and closes at the deadline
// once at least min_participants updates were accepted (otherwise the deadline moves on by
// round_duration), or as soon as max_participants were accepted; with the barrier policy it
// closes when each of K reporters has reported it (Report). A round is "open" until an update is
// accepted, then "collecting"; while "closing" it waits for updates already being folded,
// applies each module's aggregate, updates every client's record, persists, and opens t + 1.
//
// How updates are weighted and folded is the aggregation rule's (aggregation_rule.h,
// options.aggregator; one file per rule in rules/).
//
// Aggregation streams: an accepted update is validated, journaled (StateStore::JournalUpdate,
// durable before the call returns) and folded into each module's accumulator at once; nothing
// is kept per client (FedVARP, MIFA and FedAWE excepted, by definition). The fold is exact
// fixed-point arithmetic, so a round's result does not depend on arrival order or thread count.
//
// FedAU in a live server, pinned (algorithms.md §1.3 is the contract; these choices fill in what
// a simulation never has to decide):
//   - a client participates in round t when an update of its is accepted in round t;
//   - N, the divisor of the FedAU and average_all rules, is the number of enrolled, not revoked,
//     clients when the round closes;
//   - a client that enrols at round r starts its interval counter at r, not at 0 (the reference
//     code has every client present from round 0);
//   - the weight is read when the update arrives (it depends only on rounds before t and on t),
//     and the interval is recorded when the round closes; a restart replays the journal with the
//     weights recorded in it.
//
// The growing pool (SEMA-style self-expansion, options.pool; module_registry.h has the grouping
// rule). Devices propose expert modules (ModuleRole::kExpert, "block<b>/m<id>") with
// ProposeModule; a proposal close to an earlier one of the same block joins its module instead.
// Pinned choices:
//   - distribution: GetWork lists every base module, plus every expert of each block where the
//     client holds at least one expert (a block's router needs all of its mixture's experts);
//     being listed a module the first time makes the client its holder, durably, and starts its
//     FedAU counter for that module. A proposer holds the module its proposal founded or joined.
//   - aggregation: an expert is aggregated every round over the clients whose update carried it,
//     always by FedAU (the base rule's γ and cutoff) with the weight of the (client, module)
//     counter, and N = the module's holders when the round closes. Base modules keep the base
//     rule and per-client weights. Only holders may submit an expert's delta.
//   - persistence: a proposal is durable before ProposeModule returns; the (client, module)
//     counters move at the close, with the round. A restart's journal replay reads the expert
//     weights from the counters again: they only change at a close, so they are the same.
//
// Delivery is exactly once across lost acknowledgements: Submit is idempotent on (client,
// round), also after the round closed: a replay of an update that was accepted in a round that
// has since closed is acknowledged again as a duplicate (its client's last participation is that
// round) and counted once; one that was never accepted gets Aborted.
//
// Asynchronous rounds (a policy with max_staleness > 0, fedbuff): a round is a model version.
// An update names the round it was trained for and is accepted into the round open when it
// arrives, up to max_staleness rounds later, its deltas trained from any earlier module version;
// its values are scaled by the policy's staleness factor. FedAU's round is the buffer: a client
// participates in round t when an update of its is accepted into buffer t (algorithms-next.md
// §1.7), and GetWork gives a client already accepted in the open buffer nothing to do, so a
// buffer holds at most one update per client. The journal records both rounds.
//
// Clients that train from bases of their own (FedAWE, rules/fedawe.cc): GetWork lists a base
// module at the client's base version, GetModule serves that version while it is somebody's
// base, and Submit takes only deltas trained from it. A close that folded such a module gives
// it version round + 1 (the participants' new base) even if its values did not move.
//
// Errors (the host maps them to transport codes): NotFound for an unknown client or module
// version no longer kept; FailedPrecondition for a revoked client, a module trained from a stale
// version, or a coordinator whose store failed; Aborted for an update to a round that has closed
// or is closing and that was not accepted (ask for work again); OutOfRange for a round that has not
// opened; InvalidArgument for a malformed update (unknown module, layout, non-finite value, norm
// above the bound when rejecting); Unavailable when the journal could not be written, the same
// update is still being processed, or a buffer (fedbuff) already holds K updates with some still
// being folded (retry: it goes into the next buffer).
//
// Files: coordinator.cc (creation, recovery, clients, work, status), coordinator_submit.cc
// (admission, validation, journal, fold), coordinator_rounds.cc (the policy's decisions and the
// close), coordinator_pool.cc (the growing pool).
//
// Thread-safe: every method may be called concurrently.
#ifndef FEDCL_CORE_FL_COORDINATOR_H_
#define FEDCL_CORE_FL_COORDINATOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/base/clock.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/aggregator.h"
#include "core/fl/client_table.h"
#include "core/fl/fixed_point_accumulator.h"
#include "core/fl/module_registry.h"
#include "core/fl/round_policy.h"
#include "core/fl/round_types.h"
#include "core/fl/state_store.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {

enum class NormPolicy {
  kReject,  // an update whose L2 norm exceeds the bound is refused
  kClip,    // ... is scaled down to the bound and accepted
};

struct CoordinatorOptions {
  // How updates are weighted and folded: default FedAU ("adaptive"), K = ∞, γ = 1. Its
  // participation_probability pointer is set by the coordinator (to the field below).
  RuleConfig aggregator;
  Recipe recipe;  // what devices are told to do each round
  // When rounds close: default deadline_quota, 30 s rounds, min_participants 1, no quota.
  RoundPolicyConfig round;
  // Bound on an update's L2 norm over all its modules; 0 = no bound.
  double max_update_norm = 0.0;
  NormPolicy norm_policy = NormPolicy::kReject;
  // known_prob only: each client's participation probability p_n (already clipped, in (0, 1]).
  std::map<ClientId, double> participation_probability;
  // Threads folding one update's vectors in parallel chunks (oneTBB), >= 1.
  int fold_threads = 1;
  // Longest wait GetWork suggests to a client with nothing to do: a quota or an early close may
  // open the next round well before the deadline, so waiting clients check back at least this
  // often.
  absl::Duration max_retry_after = absl::Seconds(2);
  // Growth of the pool by expert modules; disabled (proposals refused) without expandable blocks.
  ModulePoolOptions pool;
  // How devices compress their deltas (core/fl/compression.h), told in each module's work; class
  // statistics always travel as float32, since their sums must stay exact.
  CompressionSpec upload_compression;
  absl::Status Validate() const;
};

// A module as published: its spec, version and values (shared, immutable once published).
struct ModuleSnapshot {
  ModuleSpec spec;
  int64_t version = 0;
  std::shared_ptr<const nn::ParameterSet> values;
  // Experts proposed with a descriptor: it, for clients that ask for it; null otherwise.
  std::shared_ptr<const nn::ParameterSet> descriptor;
};

struct ModuleInfo {
  ModuleSpec spec;
  int64_t version = 0;
  int64_t num_values = 0;
  bool download = false;        // the asking client lacks it or holds another version
  bool has_descriptor = false;  // a pool expert with a descriptor (AttachDescriptor)
  // How the server asks the device to compress its delta of this module (float32: not at all).
  CompressionSpec upload;
};

struct WorkAssignment {
  enum class Action { kTrain, kWait };
  Action action = Action::kWait;
  int64_t round = 0;
  absl::Time deadline;
  Recipe recipe;
  std::vector<ModuleInfo> modules;
  absl::Duration retry_after;  // with kWait
};

enum class RoundState { kOpen, kCollecting, kClosing };
absl::string_view RoundStateName(RoundState state);  // "open", "collecting", "closing"

struct ClientStatus {
  ClientRecord record;
  double current_weight = 1.0;  // the weight an update in the current round would get
};

// One expert module of the growing pool.
struct PoolModuleStatus {
  std::string name;
  int block = 0;
  int64_t version = 0;
  int64_t contributors = 0;  // clients whose update carried it this round (or the closed round)
  int64_t holders = 0;       // its N
};

struct CoordinatorStatus {
  int64_t round = 0;
  RoundState state = RoundState::kOpen;
  absl::Time deadline;
  int64_t accepted = 0;
  int64_t enrolled = 0;
  std::vector<ModuleVersion> modules;
  std::string aggregator;
  double weight_min = 0, weight_mean = 0, weight_max = 0;  // over enrolled clients
  std::vector<ClientStatus> clients;
  std::vector<PoolModuleStatus> pool;  // the expert modules, in pool order
  int64_t pool_merges = 0;             // proposals that joined an existing expert
};

// What happened in a closed round, for metrics lines and evaluation.
struct RoundReport {
  int64_t round = 0;
  absl::Time opened, closed;
  int64_t participants = 0;
  int64_t enrolled = 0;
  int64_t samples = 0;
  double mean_loss = 0.0;  // sample-weighted over participants; 0 if none
  double weight_min = 0, weight_mean = 0, weight_max = 0;  // over participants' fold weights
  // Asynchronous rounds: how many rounds late the accepted updates were (0 when synchronous).
  double staleness_mean = 0.0;
  int64_t staleness_max = 0;
  std::vector<ModuleVersion> modules;  // versions after the close
  std::vector<PoolModuleStatus> pool;  // experts, after the close
  int64_t pool_merges = 0;
};

// min, mean and max of `weights` (zeros when empty), for status and round reports.
void SummarizeWeights(const std::vector<double>& weights, double& min, double& mean, double& max);

class Coordinator {
 public:
  // A fresh federation over `modules` (their versions are kept as given, normally 0). Opens
  // round 0 now. `store` may be null (nothing persisted) and must outlive the coordinator.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(const CoordinatorOptions& options,
                                                             base::Clock& clock, StateStore* store,
                                                             std::vector<StoredModule> modules);

  // Resumes from a store's state: the modules and clients as of the last closed round, the open
  // round with its original deadline, and the journal of that round folded again. If the
  // deadline passed while nobody was running, the round closes at once.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Recover(const CoordinatorOptions& options,
                                                              base::Clock& clock, StateStore* store,
                                                              StoredState state);

  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Enrols `client` at the current round and returns that round; joining again is idempotent
  // and returns the original round. A revoked client enrols afresh.
  absl::StatusOr<int64_t> Enroll(ClientId client);
  // The client leaves; with `permanent` it is revoked and stops counting in N.
  absl::Status Leave(ClientId client, bool permanent);

  // What `client` should do now; `held` lists the module versions it already has. Lists every
  // base module and the experts of the blocks where the client holds one (making it a holder of
  // those it lacked; the store's error if that cannot be recorded).
  absl::StatusOr<WorkAssignment> GetWork(ClientId client, absl::Span<const ModuleVersion> held);

  // A device's new expert module (options.pool): founds a module of the pool, or joins the one
  // its statistics are close to (see module_registry.h); either way the proposer holds it.
  // `proposal.round` is the round the device was in (<= the current one). Durable on return.
  // Errors change nothing: FailedPrecondition if growth is disabled, the client left or the
  // store failed; NotFound for an unknown client; OutOfRange for a round not yet open;
  // InvalidArgument for a bad proposal (block, role, layout, non-finite or wrong-size
  // statistics, values or descriptor); ResourceExhausted at capacity; the store's error (e.g.
  // Unavailable) if the proposal could not be made durable.
  absl::StatusOr<ProposalResult> ProposeModule(const ModuleProposal& proposal);
  // A proposer of pool expert `name` gives it a descriptor (SEMA's representation descriptor with
  // its loss records, opaque here): devices that run the expert download it with the module
  // (ModuleSnapshot::descriptor) and detect with it. Proposals are made at detection, before the
  // device has trained the descriptor, so it comes afterwards; the first one given is kept.
  // True if this one was attached, false if the module already had one. NotFound for an
  // unknown client or a name that is no pool expert; FailedPrecondition for a revoked client, a
  // client whose proposal did not found or join the expert, or a stopped coordinator;
  // InvalidArgument for an empty or non-finite descriptor; the store's error. Durable before it
  // returns; nothing changes on an error.
  absl::StatusOr<bool> AttachDescriptor(ClientId client, absl::string_view name,
                                        const nn::ParameterSet& descriptor);

  // The module's current values if `version` is current; NotFound otherwise.
  absl::StatusOr<ModuleSnapshot> GetModule(absl::string_view name, int64_t version) const;
  std::vector<ModuleSnapshot> Modules() const;
  // Modules() with each module whose rule keeps a base per client (FedAWE) replaced by the mean
  // of the enrolled clients' bases (ModuleRuleState::MeanClientBase); version -1 for those.
  std::vector<ModuleSnapshot> ClientMeanModules() const;

  // Validates, journals and folds an update. Clipping (NormPolicy::kClip) and an asynchronous
  // policy's staleness factor scale the values of `update` in place. Idempotent on (client,
  // round).
  absl::StatusOr<SubmitResult> Submit(const UpdateSubmission& update);

  // Asks the round policy at the current time: closes the round and opens the next if it is due
  // (deadline_quota: the deadline passed with enough participants), or extends its deadline.
  absl::Status Tick();
  // Reporter `reporter` of `reporters` has nothing more for `round` (a simulator shard, or an
  // in-process simulator as reporter 0 of 1): the barrier policy closes the round once all have
  // reported. Errors, changing nothing: those of RoundPolicy::Report, and FailedPrecondition for
  // a coordinator stopped after a storage failure.
  struct ReportResult {
    int64_t round = 0;          // the current round after the report
    int reported = 0;           // reporters that have reported it
    bool closed = false;        // this report made the round close...
    absl::Status close_status;  // ...with this outcome (a failed close stops the coordinator)
  };
  absl::StatusOr<ReportResult> Report(int reporter, int reporters, int64_t round);
  // Closes the current round now, whatever the policy says: an operator's (or a test's) explicit
  // close. Hosts that close rounds in the normal course configure a policy instead.
  absl::Status CloseRound();

  // Everything, every client included: O(N) in time and memory.
  CoordinatorStatus Status() const;
  // At most `limit` clients from id `first` on, in id order, with their current weights; for
  // populations too large to copy whole.
  std::vector<ClientStatus> Clients(ClientId first, int64_t limit) const;
  int64_t current_round() const;
  // Reports of rounds closed since the last call, oldest first.
  std::vector<RoundReport> TakeRoundReports();
  // Bytes held by the aggregators (O(d) for FedAU, O(N·d) for FedVARP/MIFA).
  int64_t aggregator_memory_bytes() const;

  // The most a round's updates may add to a module's exact sum, as Σ weight · max|value| (half
  // the fixed-point capacity): Submit refuses an update that would pass it (InvalidArgument),
  // before it is journaled, so that no journaled update can overflow its fold.
  static constexpr double kRoundMagnitudeBudget = FixedPointAccumulator::kCapacity / 2;
  // Rules that keep each client's last delta (FedVARP, MIFA) also keep Σ_j y_j across rounds, and
  // a round's fold adds Δ_n − y_n to it. Submit bounds Σ_j max|y_j| by this budget: with the
  // round's Σ max|Δ_n| within kRoundMagnitudeBudget, no sum they keep can pass the capacity
  // (Σ y_j + Σ_S|Δ_n| + Σ_S|y_n| <= C/8 + C/2 + C/8). An update that would pass it is refused
  // (InvalidArgument, naming the module) before it is journaled.
  static constexpr double kClientMemoryMagnitudeBudget = FixedPointAccumulator::kCapacity / 8;

 private:
  struct PooledModule {
    ModuleSpec spec;
    int64_t version = 0;
    std::shared_ptr<const nn::ParameterSet> values;
    std::unique_ptr<ModuleAggregator> aggregator;
    int64_t participants = 0;  // this round
    // Experts only: the registry id (0 for base modules), the descriptor, and this round's
    // contributors (whose (client, module) counters move at the close).
    int64_t pool_id = 0;
    std::shared_ptr<const nn::ParameterSet> descriptor;
    std::vector<ClientId> contributors;
  };

  Coordinator(const CoordinatorOptions& options, base::Clock& clock, StateStore* store);
  absl::Status InitModules(std::vector<StoredModule> modules) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recover: folds the open round's journaled updates again, with the weights recorded in them.
  absl::Status ReplayJournalLocked(std::vector<JournalEntry>& journal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens `round` at `opened` with the policy's deadline.
  absl::Status OpenRoundLocked(int64_t round, absl::Time opened) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  RoundProgress ProgressLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status CloseRoundLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double WeightLocked(const ClientRecord& client, int64_t round) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What Submit needs once admitted: the client's weight, and each delta's fold weight and
  // aggregator.
  struct Admission {
    int64_t round = 0;              // the round it is accepted into
    double weight = 0.0;            // the rule's client weight (journaled)
    double staleness_weight = 1.0;  // the policy's factor for how late it is (scales values)
    std::vector<double> weights;    // parallel to update.modules
    std::vector<ModuleAggregator*> aggregators;  // parallel to update.modules
    // Parallel to update.modules: class statistics, summed as sent (never clipped, discounted
    // for staleness or counted in the update's norm).
    std::vector<bool> exact;
  };
  absl::StatusOr<Admission> AdmitLocked(const UpdateSubmission& update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reserves room in the round's exact sums for an admitted update (values as they will be
  // folded), before it is journaled: the fold of a journaled update must not overflow, so an
  // update that could make the round's sum pass half the fixed-point capacity is refused
  // (InvalidArgument: values that large are no learning) instead. Takes the lock.
  // `largest`: each delta's largest |value| before the values were scaled by `scales` (parallel
  // to update.modules).
  // Rules with client memory: also reserves, for each delta, max|value| as folded against
  // kClientMemoryMagnitudeBudget (StoreMemoryPeaksLocked settles it once the update is folded).
  absl::Status ReserveMagnitude(const UpdateSubmission& update, const std::vector<double>& weights,
                                const std::vector<float>& largest,
                                const std::vector<double>& scales) ABSL_LOCKS_EXCLUDED(mu_);
  // Rules with client memory: records max|y_n| = `peaks[i]` (parallel to update.modules) for the
  // update's client, now that its deltas are stored.
  void StoreMemoryPeaksLocked(const UpdateSubmission& update, const std::vector<float>& peaks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A client revoked for good: its stored delta (FedVARP, MIFA) and its peak leave `module`.
  void ForgetStoredDeltaLocked(PooledModule& module, ClientId client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The acknowledgement of an update already counted, or nullopt.
  std::optional<SubmitResult> DuplicateLocked(const UpdateSubmission& update) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status ValidateAgainstPool(const UpdateSubmission& update) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Folds each delta into its aggregator (which locks itself). Not under mu_.
  static absl::Status FoldAll(const UpdateSubmission& update, const std::vector<double>& weights,
                              const std::vector<ModuleAggregator*>& aggregators);
  std::vector<ModuleAggregator*> AggregatorsForLocked(const UpdateSubmission& update)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  int64_t EnrolledLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The version of `module` that `client` trains from: its base under a rule that keeps one
  // per client (FedAWE), else the current one.
  int64_t TrainingVersionLocked(const PooledModule& module, ClientId client) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  PooledModule* FindModuleLocked(absl::string_view name) ABSL_SHARED_LOCKS_REQUIRED(mu_);
  const PooledModule* FindModuleLocked(absl::string_view name) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Marks the update's modules as contributed to by its client.
  void CountContributionLocked(const UpdateSubmission& update) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The growing pool (coordinator_pool.cc).
  const std::shared_ptr<const AggregationRule>& RuleFor(ModuleRole role) const;
  // After InitModules: the registry from `state`, the experts' registry links, and a pooled
  // module for each expert founded since the modules were stored.
  absl::Status RestorePoolLocked(ModuleRegistryState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `round_open`: the round is open (a proposal), so the expert's aggregator joins it now.
  void AddExpertLocked(const RegisteredModule& module, bool round_open)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The blocks whose experts GetWork lists to `client`; makes it (durably) a holder of each of
  // their experts it does not hold yet.
  absl::StatusOr<std::vector<int>> HandOutExpertsLocked(ClientId client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fold weights per delta: `client_weight` for base modules, the (client, module) FedAU weight
  // for experts (FailedPrecondition if the client does not hold one).
  absl::StatusOr<std::vector<double>> DeltaWeightsLocked(const UpdateSubmission& update,
                                                         double client_weight) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // N for `module`'s aggregate: its holders for an expert, `enrolled` otherwise.
  int64_t DivisorLocked(const PooledModule& module, int64_t enrolled) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The (client, module) counters of this round's expert contributors after the close.
  std::vector<PoolHolder> PoolParticipationsLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::vector<PoolModuleStatus> PoolStatusLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  std::shared_ptr<const AggregationRule> rule_;             // options_.aggregator
  std::shared_ptr<const AggregationRule> expert_rule_;      // FedAU with the base rule's γ and K
  std::shared_ptr<const AggregationRule> statistics_rule_;  // "sum", for class statistics
  base::Clock& clock_;
  StateStore* const store_;
  std::unique_ptr<tbb::task_arena> arena_;

  mutable absl::Mutex mu_;
  std::unique_ptr<RoundPolicy> policy_ ABSL_GUARDED_BY(mu_);
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<PooledModule> modules_ ABSL_GUARDED_BY(mu_);  // base modules, then experts
  std::unique_ptr<ModuleRegistry> registry_ ABSL_GUARDED_BY(mu_);
  ClientTable clients_ ABSL_GUARDED_BY(mu_);
  int64_t active_clients_ ABSL_GUARDED_BY(mu_) = 0;  // enrolled and not revoked
  // Revoked since the last close: FedVARP and MIFA drop their stored vectors at the close.
  std::vector<ClientId> revoked_since_close_ ABSL_GUARDED_BY(mu_);
  int64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  RoundState state_ ABSL_GUARDED_BY(mu_) = RoundState::kOpen;
  absl::Time opened_ ABSL_GUARDED_BY(mu_);
  absl::Time deadline_ ABSL_GUARDED_BY(mu_);
  // Clients whose update of this round was accepted, with the weight it was folded with.
  absl::flat_hash_map<ClientId, double> accepted_ ABSL_GUARDED_BY(mu_);
  // Clients whose update is being validated, journaled or folded right now.
  absl::flat_hash_set<ClientId> in_flight_ ABSL_GUARDED_BY(mu_);
  int64_t round_samples_ ABSL_GUARDED_BY(mu_) = 0;
  double round_loss_sum_ ABSL_GUARDED_BY(mu_) = 0.0;
  // Per module, Σ weight · max|value| over this round's admitted updates (ReserveMagnitude).
  absl::flat_hash_map<std::string, double> round_magnitude_ ABSL_GUARDED_BY(mu_);
  // Per module of a rule with client memory: max|y_n| per client, as stored or (while an update
  // is in flight) the larger of that and what it will store; and their sum.
  struct MemoryPeaks {
    absl::flat_hash_map<ClientId, double> by_client;
    double total = 0.0;
    double Of(ClientId client) const {
      auto it = by_client.find(client);
      return it == by_client.end() ? 0.0 : it->second;
    }
    void Set(ClientId client, double peak) {
      double& held = by_client[client];
      total += peak - held;
      held = peak;
    }
    void Forget(ClientId client) {
      Set(client, 0.0);
      by_client.erase(client);
    }
  };
  absl::flat_hash_map<std::string, MemoryPeaks> memory_peaks_ ABSL_GUARDED_BY(mu_);
  int64_t round_staleness_sum_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t round_staleness_max_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<RoundReport> reports_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_COORDINATOR_H_
