// What a shared module is to the model it trains: its name, its role and, for a
// parameter-efficient module, its configuration. The server's pool (core/fl) and the device's
// learner (core/cl) both describe modules this way.
#ifndef FEDCL_CORE_PEFT_MODULE_SPEC_H_
#define FEDCL_CORE_PEFT_MODULE_SPEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/peft/pet_config.h"

namespace fedcl::peft {

enum class ModuleRole {
  kHead,      // the classifier head's parameters
  kBackbone,  // the whole backbone, trained end to end (a "whole small model" run)
  kPet,       // a parameter-efficient module (peft::PetModule)
  // One SEMA mixture expert (adapter + router) at an expandable transformer block. Experts are
  // never configured: devices add them to the pool with Coordinator::ProposeModule. Layout:
  // fl::ExpertLayout (core/fl/module_registry.h).
  kExpert,
  // The first expert of an expandable block's mixture ("block<b>/e0"), which every device runs
  // from the start: served to every device and aggregated like the head, not part of the growing
  // pool. The server creates them (PoolConfig.base_experts).
  kBaseExpert,
  // One of FedIns' shared sets (cl::NewInstancePoolModules): the keys, an SSF set or a head of
  // the instance pool. Aggregated like any module; only the continual learner can run them, each
  // instance with the mean of the sets its query selects. The server creates them (FedInsConfig).
  kInstancePool,
  // Exact statistics summed across devices, not averaged models: the class feature sums and
  // counts of federated SimpleCIL (cl::NewClassStatistics: "class_sums" [classes, dim] and
  // "class_counts" [classes]). Folded by the "sum" rule whatever the server's aggregator, never
  // clipped or discounted for staleness, and refused unless every count a delta adds is a
  // non-negative whole number that comes with its sums.
  kClassStatistics,
};

// "head", "backbone", "pet", "expert", "base_expert", "instance_pool", "class_statistics"
absl::string_view ModuleRoleName(ModuleRole role);
absl::StatusOr<ModuleRole> ParseModuleRole(absl::string_view name);

struct ModuleSpec {
  std::string name;  // unique in the pool
  ModuleRole role = ModuleRole::kPet;
  PetConfig pet;   // for kPet
  int block = -1;  // for kExpert and kBaseExpert: the block whose mixture it belongs to
};

}  // namespace fedcl::peft

#endif  // FEDCL_CORE_PEFT_MODULE_SPEC_H_
