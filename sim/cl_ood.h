// OOD detection in a continual scenario: after the first task, each configured detector is fitted
// on the first task's training images (the device's in-distribution), calibrated at 95% TPR on
// half of its test images, and scored on the other half (ID) against the same images under every
// later domain (domains) or against the later tasks' unseen classes (classes).
#ifndef FEDCL_SIM_CL_OOD_H_
#define FEDCL_SIM_CL_OOD_H_

#include <vector>

#include "absl/status/statusor.h"
#include "core/cl/learner.h"
#include "sim/cl_tasks.h"

namespace fedcl::sim {

struct OodResult;

// The detector kinds a continual scenario lists (default: all five).
std::vector<cl::OodScoreKind> DetectorKinds(const v1::ContinualConfig& config);

absl::StatusOr<std::vector<OodResult>> ScoreDetectors(cl::Learner& learner,
                                                      const v1::ContinualConfig& config,
                                                      const std::vector<ClTask>& tasks);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_CL_OOD_H_
