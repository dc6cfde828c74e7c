// OOD detection in a continual scenario: after the first task, each configured detector is fitted
// on the first task's training images (the device's in-distribution), calibrated at 95% TPR on
// half of its test images, and scored on the other half (ID) against the same images under every
// later domain (domains) or against the later tasks' unseen classes (classes). Each detector comes
// from the registry (core/ood/detector_registry.h) with seed 1 and its default options, and reads
// the hooks its entry names.
#ifndef FEDCL_SIM_CL_OOD_H_
#define FEDCL_SIM_CL_OOD_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/cl/learner.h"
#include "sim/cl_tasks.h"

namespace fedcl::sim {

struct OodResult;

// The detectors a continual scenario lists, by registered name (default: every registered one,
// sorted; the scenario's validation has checked the names).
std::vector<std::string> DetectorNames(const v1::ContinualConfig& config);

absl::StatusOr<std::vector<OodResult>> ScoreDetectors(cl::Learner& learner,
                                                      const v1::ContinualConfig& config,
                                                      const std::vector<ClTask>& tasks);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_CL_OOD_H_
