// Vocabulary shared by the coordinator, its state store and the hosts: client ids, the training
// recipe sent to devices, module descriptions and update submissions.
#ifndef FEDCL_CORE_FL_ROUND_TYPES_H_
#define FEDCL_CORE_FL_ROUND_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/nn/tensor.h"
#include "core/peft/pet_config.h"

namespace fedcl::fl {

// A device's identity. Simulator workers act for ranges of them.
using ClientId = uint64_t;

// How devices train locally each round (algorithms.md §1.4: plain SGD, I = 5, B = 16, η = 0.1 in
// the FedAU reference runs).
struct Recipe {
  int local_steps = 5;            // optimizer steps per round, in [1, 100000]
  int batch_size = 16;            // samples per step, in [1, 65536]
  float learning_rate = 0.1f;     // > 0
  std::string optimizer = "sgd";  // "sgd" or "adamw"; a fresh optimizer every round
  float momentum = 0.0f;          // SGD momentum in [0, 1)
  float weight_decay = 0.0f;      // >= 0
  float clip_grad_norm = 0.0f;    // per-step gradient clip, 0 for none
  absl::Status Validate() const;
};

// What a pooled module is to the model it trains.
enum class ModuleRole {
  kHead,      // the classifier head's parameters
  kBackbone,  // the whole backbone, trained end to end (a "whole small model" run)
  kPet,       // a parameter-efficient module (peft::PetModule)
  // One SEMA mixture expert (adapter + router) at an expandable transformer block. Experts are
  // never configured: devices add them to the pool with Coordinator::ProposeModule. Layout:
  // ExpertLayout (module_registry.h).
  kExpert,
  // The first expert of an expandable block's mixture ("block<b>/e0", ExpertLayout), which every
  // device runs from the start: served to every device and aggregated like the head, not part
  // of the growing pool. The server creates them (PoolConfig.base_experts).
  kBaseExpert,
  // One of FedIns' shared sets (cl::NewInstancePoolModules): the keys, an SSF set or a head of
  // the instance pool. Aggregated like any module; only the continual learner can run them, each
  // instance with the mean of the sets its query selects. The server creates them (FedInsConfig).
  kInstancePool,
};

// "head", "backbone", "pet", "expert", "base_expert", "instance_pool"
absl::string_view ModuleRoleName(ModuleRole role);
absl::StatusOr<ModuleRole> ParseModuleRole(absl::string_view name);

struct ModuleSpec {
  std::string name;  // unique in the pool
  ModuleRole role = ModuleRole::kPet;
  peft::PetConfig pet;  // for kPet
  int block = -1;       // for kExpert and kBaseExpert: the block whose mixture it belongs to
};

// One tensor of a module's layout, as a client declares it.
struct TensorSpec {
  std::string name;
  nn::Shape shape;
};

// A module and the version a client holds or a server publishes. Version v means "as updated by
// the close of round v" (0 = initial).
struct ModuleVersion {
  std::string name;
  int64_t version = 0;
};

// One module's delta in a submission. `values` are not owned: they point into the host's
// receive buffer, must stay valid for the duration of Coordinator::Submit, and may be scaled in
// place when the coordinator clips the update.
struct ModuleDelta {
  std::string name;
  int64_t base_version = 0;
  std::vector<TensorSpec> layout;  // tensor names and shapes, in the order of `values`
  absl::Span<float> values;
};

struct UpdateSubmission {
  ClientId client = 0;
  int64_t round = 0;
  int64_t num_samples = 0;
  int64_t local_steps = 0;
  double loss = 0.0;
  std::vector<ModuleDelta> modules;
};

struct SubmitResult {
  int64_t round = 0;
  bool duplicate = false;  // already accepted earlier: acknowledged again, counted once
  // The aggregation weight the update was folded with; 0 for a duplicate whose round has
  // closed (the weight is not kept past the close).
  double weight = 0.0;
  bool clipped = false;  // the norm exceeded the bound and the update was scaled down
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_ROUND_TYPES_H_
