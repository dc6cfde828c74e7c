#include "core/cl/growth_budget.h"

#include "absl/strings/str_cat.h"

namespace fedcl::cl {

absl::Status GrowthBudget::Check(int block, int adapters, int64_t module_bytes,
                                 int64_t used_bytes) {
  if (adapters >= limits_.max_adapters_per_block) {
    ++refused_at_cap_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "block ", block, " already has ", adapters, " adapters (the cap is ",
        limits_.max_adapters_per_block, "): not growing; the existing mixture serves the shift"));
  }
  if (limits_.memory_budget_bytes > 0 && used_bytes + module_bytes > limits_.memory_budget_bytes) {
    ++refused_for_memory_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "a new module of ", module_bytes, " bytes at block ", block, " would take the device's ",
        used_bytes, " bytes of modules past its budget of ", limits_.memory_budget_bytes,
        ": not growing"));
  }
  return absl::OkStatus();
}

}  // namespace fedcl::cl
