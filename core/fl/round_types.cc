#include "core/fl/round_types.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedcl::fl {

absl::Status Recipe::Validate() const {
  auto bad = [](absl::string_view field, auto value) {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe: ", field, " = ", value, " is out of range"));
  };
  if (local_steps < 1 || local_steps > 100000) return bad("local_steps", local_steps);
  if (batch_size < 1 || batch_size > 65536) return bad("batch_size", batch_size);
  if (!(learning_rate > 0.0f) || !std::isfinite(learning_rate))
    return bad("learning_rate", learning_rate);
  if (optimizer != "sgd" && optimizer != "adamw") {
    return absl::InvalidArgumentError(
        absl::StrCat("recipe: unknown optimizer '", optimizer, "' (expected sgd or adamw)"));
  }
  if (!(momentum >= 0.0f && momentum < 1.0f)) return bad("momentum", momentum);
  if (!(weight_decay >= 0.0f) || !std::isfinite(weight_decay))
    return bad("weight_decay", weight_decay);
  if (!(clip_grad_norm >= 0.0f) || !std::isfinite(clip_grad_norm)) {
    return bad("clip_grad_norm", clip_grad_norm);
  }
  return absl::OkStatus();
}

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
  return absl::InvalidArgumentError(
      absl::StrCat("unknown module role '", name,
                   "' (expected head, backbone, pet, expert, base_expert or instance_pool)"));
}

}  // namespace fedcl::fl
