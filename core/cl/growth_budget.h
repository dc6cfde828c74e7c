// When a device may grow (SEMA self-expansion): a cap on adapters per expandable block and a
// memory budget for everything the device's modules hold. At the cap, or when the new module
// would exceed the budget, growth is refused with ResourceExhausted naming which limit, and the
// refusal is counted: the shifted data is then served by the block's existing mixture (the router
// still weighs the adapters it has), nothing is added and nothing is evicted.
#ifndef FEDCL_CORE_CL_GROWTH_BUDGET_H_
#define FEDCL_CORE_CL_GROWTH_BUDGET_H_

#include <cstdint>
#include <map>

#include "absl/status/status.h"

namespace fedcl::cl {

struct GrowthLimits {
  int max_adapters_per_block = 4;   // >= 1
  int64_t memory_budget_bytes = 0;  // 0 = no memory limit
};

class GrowthBudget {
 public:
  explicit GrowthBudget(const GrowthLimits& limits) : limits_(limits) {}

  // Whether `block`, now holding `adapters`, may add a module of `module_bytes` while the device's
  // modules hold `used_bytes`. On refusal, counts it and returns ResourceExhausted.
  absl::Status Check(int block, int adapters, int64_t module_bytes, int64_t used_bytes);

  int64_t refused_at_cap() const { return refused_at_cap_; }
  int64_t refused_for_memory() const { return refused_for_memory_; }

 private:
  GrowthLimits limits_;
  int64_t refused_at_cap_ = 0;
  int64_t refused_for_memory_ = 0;
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_GROWTH_BUDGET_H_
