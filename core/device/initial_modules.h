// The server's initial modules for a continual method: what a learner shares, as the method
// describes it (cl::Learner::SharedModuleSpecs) with the learner's initial values. fedcl-server's
// config, the in-process simulators and tests build a method's pool from this rather than by
// hand, so a new method needs nothing in the hosts.
#ifndef FEDCL_CORE_DEVICE_INITIAL_MODULES_H_
#define FEDCL_CORE_DEVICE_INITIAL_MODULES_H_

#include <vector>

#include "core/cl/learner.h"
#include "core/fl/state_store.h"

namespace fedcl::device {

// Every shared module of `learner` except pool experts grown on a device (role expert), at
// version 0, every value trainable.
std::vector<fl::StoredModule> InitialModules(cl::Learner& learner);

}  // namespace fedcl::device

#endif  // FEDCL_CORE_DEVICE_INITIAL_MODULES_H_
