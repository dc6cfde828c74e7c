#include "core/peft/module_spec.h"

#include "absl/strings/str_cat.h"

namespace fedcl::peft {

absl::string_view ModuleRoleName(ModuleRole role) {
  switch (role) {
    case ModuleRole::kHead:
      return "head";
    case ModuleRole::kBackbone:
      return "backbone";
    case ModuleRole::kPet:
      return "pet";
    case ModuleRole::kExpert:
      return "expert";
    case ModuleRole::kBaseExpert:
      return "base_expert";
    case ModuleRole::kInstancePool:
      return "instance_pool";
    case ModuleRole::kClassStatistics:
      return "class_statistics";
  }
  return "unknown";
}

absl::StatusOr<ModuleRole> ParseModuleRole(absl::string_view name) {
  if (name == "head") return ModuleRole::kHead;
  if (name == "backbone") return ModuleRole::kBackbone;
  if (name == "pet") return ModuleRole::kPet;
  if (name == "expert") return ModuleRole::kExpert;
  if (name == "base_expert") return ModuleRole::kBaseExpert;
  if (name == "instance_pool") return ModuleRole::kInstancePool;
  if (name == "class_statistics") return ModuleRole::kClassStatistics;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown module role '", name,
                   "' (expected head, backbone, pet, expert, base_expert, instance_pool or "
                   "class_statistics)"));
}

}  // namespace fedcl::peft
