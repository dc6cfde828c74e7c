#include "core/peft/pet_config.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fedcl::peft {

absl::string_view PetKindName(PetKind kind) {
  switch (kind) {
    case PetKind::kSsf:
      return "ssf";
    case PetKind::kAdapter:
      return "adapter";
    case PetKind::kLora:
      return "lora";
  }
  return "unknown";
}

absl::StatusOr<PetKind> ParsePetKind(absl::string_view name) {
  if (name == "ssf") return PetKind::kSsf;
  if (name == "adapter") return PetKind::kAdapter;
  if (name == "lora") return PetKind::kLora;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown PET kind '", name, "' (expected ssf, adapter or lora)"));
}

bool PetConfig::Covers(absl::string_view site_name) const {
  if (site_prefixes.empty()) return true;
  for (const std::string& prefix : site_prefixes) {
    if (site_name == prefix) return true;
    if (absl::StartsWith(site_name, prefix) && site_name.size() > prefix.size() &&
        site_name[prefix.size()] == '.') {
      return true;
    }
  }
  return false;
}

absl::Status PetConfig::Validate() const {
  if (!(ssf_init_stddev >= 0.0f) || !std::isfinite(ssf_init_stddev)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PET config: ssf_init_stddev must be >= 0, got ", ssf_init_stddev));
  }
  if (adapter_bottleneck < 1 || adapter_bottleneck > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PET config: adapter_bottleneck must be in [1, 4096], got ", adapter_bottleneck));
  }
  if (lora_rank < 1 || lora_rank > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("PET config: lora_rank must be in [1, 4096], got ", lora_rank));
  }
  if (!(lora_alpha > 0.0f) || !std::isfinite(lora_alpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat("PET config: lora_alpha must be > 0, got ", lora_alpha));
  }
  for (const std::string& prefix : site_prefixes) {
    if (prefix.empty()) return absl::InvalidArgumentError("PET config: empty site prefix");
  }
  return absl::OkStatus();
}

}  // namespace fedcl::peft
