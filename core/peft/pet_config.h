// What kind of parameter-efficient (PET) module to build, and where.
#ifndef FEDCL_CORE_PEFT_PET_CONFIG_H_
#define FEDCL_CORE_PEFT_PET_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedcl::peft {

enum class PetKind {
  kSsf,      // per-channel scale and shift at SSF sites (algorithms.md §2)
  kAdapter,  // bottleneck adapter parallel to a block's MLP (§4.2)
  kLora,     // low-rank update of Linear weights (§5.2)
};

// "ssf" / "adapter" / "lora".
absl::string_view PetKindName(PetKind kind);
absl::StatusOr<PetKind> ParsePetKind(absl::string_view name);

struct PetConfig {
  PetKind kind = PetKind::kSsf;
  // Which extension points the module covers, by name prefix: a site is covered if its name
  // equals a prefix or starts with "<prefix>.". Empty covers every site of the module's kind,
  // e.g. {"blocks.2", "blocks.3"} puts adapters on the last two blocks of a 4-block ViT.
  std::vector<std::string> site_prefixes;
  // SSF: γ ~ N(1, σ²), β ~ N(0, σ²) with σ = ssf_init_stddev (0.02 in the reference code).
  float ssf_init_stddev = 0.02f;
  // Adapter: hidden width of the bottleneck d → r → d.
  int adapter_bottleneck = 8;
  // LoRA: rank r and scaling α; the update is (α / r)·B·A.
  int lora_rank = 4;
  float lora_alpha = 4.0f;

  bool Covers(absl::string_view site_name) const;
  // InvalidArgument naming the bad field.
  absl::Status Validate() const;
};

}  // namespace fedcl::peft

#endif  // FEDCL_CORE_PEFT_PET_CONFIG_H_
