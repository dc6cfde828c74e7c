// The server's growing pool of modules (issue: continual learning, server side). A device that
// expands proposes its new module with the statistics of the block inputs that triggered it (the
// per-dimension mean and variance of the token-mean features over its detection window). The
// registry gives each module an id and a version, and recognises proposals from different devices
// for the same shift: a proposal joins an existing group when it is for the same block, arrives
// within `round_window` rounds of the group's first proposal, and its input statistics are close
// to the group's, by the symmetric Kullback-Leibler divergence between diagonal Gaussians per
// dimension:
//   D(p, q) = (1 / 2d) Σ_i [ σp²/σq² + σq²/σp² − 2 + (μp − μq)² (1/σp² + 1/σq²) ]
// The first proposal's parameters become the group's module; later members train that one module.
//
// Each module keeps its holders (the devices that received it) and a FedAU state per (client,
// module), started when the device first receives the module: N for the module is its number of
// holders, and the weight is FedAU's estimate over that module's rounds only.
//
// Errors change nothing: InvalidArgument for an unknown (non-expandable) block, parameters whose
// layout does not match the module type's at that block, statistics that are not finite or have a
// non-positive variance, or of the wrong dimension, values or a descriptor that are not finite;
// ResourceExhausted when a new group would exceed the configured capacity; NotFound for an
// unknown module id.
//
// A caller that must make a proposal durable before it takes effect (the coordinator) uses Plan,
// which decides without changing anything, writes the planned module, then Apply.
//
// Not thread-safe: the coordinator serialises access.
#ifndef FEDCL_CORE_FL_MODULE_REGISTRY_H_
#define FEDCL_CORE_FL_MODULE_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/fl/fedau_estimator.h"
#include "core/fl/round_types.h"
#include "core/nn/parameter_set.h"

namespace fedcl::fl {

// Input statistics of a block over a detection window: a diagonal Gaussian.
struct BlockStatistics {
  std::vector<float> mean;
  std::vector<float> variance;
};

// The tensors of one SEMA mixture expert (ModuleRole::kExpert) for model width `dim` and adapter
// bottleneck `bottleneck`, in this order: "down.weight" [b, d], "down.bias" [b], "up.weight"
// [d, b], "up.bias" [d], "router.weight" [1, d], "router.bias" [1]. Devices build their experts'
// ParameterSets with exactly these names and shapes.
std::vector<TensorSpec> ExpertLayout(int dim, int bottleneck);

// Growth of the coordinator's pool by expert modules (CoordinatorOptions::pool). Disabled while
// `expandable_blocks` is empty.
struct ModulePoolOptions {
  std::vector<int> expandable_blocks;  // e.g. {2, 3}: the small ViT's last two blocks; >= 0
  int statistics_dim = 64;             // d: the model width (ViT dim), in [1, 65536]
  int capacity = 16;                   // expert modules the pool may hold, in [1, 4096]
  int64_t round_window = 5;            // >= 0
  double divergence_threshold = 0.5;   // finite, > 0
  int expert_bottleneck = 8;           // b, in [1, statistics_dim]
  bool enabled() const { return !expandable_blocks.empty(); }
  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

// The per-dimension symmetric KL divergence above. Both must have the same, non-zero dimension
// and positive variances (checked by the registry before it calls this).
double SymmetricDivergence(const BlockStatistics& p, const BlockStatistics& q);

struct ModuleProposal {
  ClientId client = 0;
  int64_t round = 0;
  int block = 0;
  ModuleSpec spec;
  nn::ParameterSet values;
  BlockStatistics statistics;
  // Opaque to the server (e.g. the device's OOD descriptor of the shift); may be empty. Must be
  // finite. Only the founding proposal's is kept.
  nn::ParameterSet descriptor;
};

struct ModuleRegistryOptions {
  std::vector<int> expandable_blocks;  // e.g. {2, 3}: the small ViT's last two blocks
  int statistics_dim = 0;              // dimension of the block inputs (64 for the small ViT)
  int capacity = 16;                   // modules the pool may hold
  int64_t round_window = 5;            // proposals this many rounds apart may still merge
  double divergence_threshold = 0.5;   // D below which two shifts are the same
  // The tensor layout a module of `spec` must have at `block` (from the model); proposals whose
  // values differ are refused.
  std::function<absl::StatusOr<std::vector<TensorSpec>>(const ModuleSpec& spec, int block)> layout;
};

struct RegisteredModule {
  int64_t id = 0;
  std::string name;  // "block<b>/m<id>"
  int block = 0;
  int64_t version = 0;  // bumps when its aggregate is applied
  int64_t created_round = 0;
  ModuleSpec spec;
  nn::ParameterSet values;          // the founding proposal's (the pool trains its own copy)
  nn::ParameterSet descriptor;      // the founding proposal's; may be empty
  BlockStatistics statistics;       // the founding proposal's
  std::vector<ClientId> proposers;  // every device whose proposal joined this module
};

struct ProposalResult {
  int64_t module_id = 0;
  std::string name;         // "block<b>/m<id>"
  bool merged = false;      // joined an existing module rather than founding one
  double divergence = 0.0;  // to the module it joined (0 when founding)
};

// What Propose would do: the result and the module as it would be afterwards.
struct ProposalPlan {
  ProposalResult result;
  RegisteredModule module;
};

// One (module, client) FedAU counter.
struct PoolHolder {
  int64_t module_id = 0;
  ClientId client = 0;
  FedAuClientState fedau;
};

// Everything a registry holds, for persistence: Restore(ExportState()) continues identically.
struct ModuleRegistryState {
  std::vector<RegisteredModule> modules;  // by id
  std::vector<PoolHolder> holders;        // by (module, client)
  int64_t next_id = 1;
  int64_t merges = 0;
};

class ModuleRegistry {
 public:
  explicit ModuleRegistry(ModuleRegistryOptions options) : options_(std::move(options)) {}
  // A registry with `state` (e.g. loaded after a restart). DataLoss if the state is inconsistent
  // (ids not below next_id or repeated, holders of unknown modules, invalid FedAU counters).
  static absl::StatusOr<ModuleRegistry> Restore(ModuleRegistryOptions options,
                                                ModuleRegistryState state);
  ModuleRegistryState ExportState() const;

  // Plan + Apply.
  absl::StatusOr<ProposalResult> Propose(const ModuleProposal& proposal);
  // Validates and decides, changing nothing. The plan is valid until the registry next changes.
  absl::StatusOr<ProposalPlan> Plan(const ModuleProposal& proposal) const;
  void Apply(ProposalPlan plan);

  // `client` has received module `id` in `round`: it becomes a holder, and its FedAU counter for
  // the module starts there (idempotent).
  absl::Status AddHolder(int64_t id, ClientId client, int64_t round);
  // N for the module's aggregation: its number of holders.
  absl::StatusOr<int64_t> Holders(int64_t id) const;
  bool IsHolder(int64_t id, ClientId client) const;
  // `client`'s FedAU counter for module `id`; NotFound if it does not hold it.
  absl::StatusOr<FedAuClientState> HolderState(int64_t id, ClientId client) const;
  // The FedAU weight `client` would get for module `id` in `round`, and recording that it took
  // part (both as core/fl/fedau_estimator.h, per (client, module)).
  absl::StatusOr<double> Weight(int64_t id, ClientId client, int64_t round, int64_t cutoff) const;
  absl::StatusOr<double> RecordParticipation(int64_t id, ClientId client, int64_t round,
                                             int64_t cutoff);

  const RegisteredModule* Find(int64_t id) const;
  // Sets module `id`'s descriptor (Coordinator::AttachDescriptor checks who may). NotFound for an
  // unknown id.
  absl::Status SetDescriptor(int64_t id, nn::ParameterSet descriptor);
  std::vector<const RegisteredModule*> modules() const;
  int64_t size() const { return static_cast<int64_t>(modules_.size()); }
  int64_t merges() const { return merges_; }
  int64_t next_id() const { return next_id_; }

 private:
  absl::Status Validate(const ModuleProposal& proposal) const;
  struct Holder {
    FedAuClientState fedau;
  };
  ModuleRegistryOptions options_;
  std::map<int64_t, RegisteredModule> modules_;
  std::map<int64_t, absl::flat_hash_map<ClientId, Holder>> holders_;
  int64_t next_id_ = 1;
  int64_t merges_ = 0;
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_MODULE_REGISTRY_H_
