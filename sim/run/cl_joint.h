// The joint-training upper bound of a continual scenario: one learner of continual.joint_method
// trained on the union of every task's training data (all devices' slices), shuffled, so it never
// sees the tasks in sequence and forgets nothing by construction; then scored on every task's
// test images, as the methods are. Its accuracy matrix repeats that one row after every task, so
// its Ā and A_T are what the backbone and the method's trainable modules reach when the order of
// the stream does not matter, and every method's row reads against it. Centralised: no server,
// no participation; it learns every class from the first step.
#ifndef FEDCL_SIM_RUN_CL_JOINT_H_
#define FEDCL_SIM_RUN_CL_JOINT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "sim/run/cl_engine.h"
#include "sim/run/results.h"
#include "sim/world/cl_tasks.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

// The method name the bound's rows carry in reports.
inline constexpr char kJointBoundMethod[] = "joint_bound";

absl::StatusOr<ClRunResult> RunJointBound(const Scenario& scenario, const SimulationInputs& inputs,
                                          const std::vector<ClTask>& tasks, uint64_t seed,
                                          const ClEngineOptions& options);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_CL_JOINT_H_
