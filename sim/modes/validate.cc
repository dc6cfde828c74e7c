#include <cstdio>

#include "sim/modes/modes.h"

namespace fedcl::sim {

absl::Status ValidateOnly(const Scenario& scenario) {
  std::printf("scenario '%s' is valid: %d clients, %d method(s), %d pattern(s), %d seed(s)\n",
              scenario.config.name().c_str(), scenario.num_clients(),
              static_cast<int>(scenario.methods.size()), static_cast<int>(scenario.patterns.size()),
              scenario.config.seed_size());
  return absl::OkStatus();
}

}  // namespace fedcl::sim
