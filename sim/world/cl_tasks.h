// The tasks of a continual scenario (ContinualConfig): for each task, the training images its
// devices draw from and the test images of the accuracy matrix.
//   domains: task 0 is clean Fashion-MNIST; task t applies shift t−1 to every image (the noise
//            is drawn once per image, from the run's seed), so all devices see the same domain.
//   classes: task t holds the classes of its `task` entry, labels unchanged.
#ifndef FEDCL_SIM_WORLD_CL_TASKS_H_
#define FEDCL_SIM_WORLD_CL_TASKS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/data/shifts.h"
#include "proto/fedcl/v1/scenario.pb.h"

namespace fedcl::sim {

struct ClTask {
  std::string name;          // "clean", "inversion", ... or "classes 5-6"
  std::vector<int> classes;  // classes-incremental: the task's classes; domains: empty (all)
  data::Shift shift = data::Shift::kNone;
  data::Dataset train, test;
};

// "0-4" → {0, 1, 2, 3, 4}; "5,7" → {5, 7}. InvalidArgument naming the text otherwise.
absl::StatusOr<std::vector<int>> ParseClassList(const std::string& text, int num_classes);

// Validates a ContinualConfig's task list (shifts or class lists), naming the field.
absl::Status ValidateTasks(const v1::ContinualConfig& config, int num_classes);

// Builds every task from the full training and test sets: devices × samples_per_task training
// images per task (device d's are rows [d·S, (d+1)·S) of the task's set) and at most
// `eval_samples` test images.
absl::StatusOr<std::vector<ClTask>> BuildTasks(const v1::ContinualConfig& config, int devices,
                                               const data::Dataset& train,
                                               const data::Dataset& test, uint64_t seed);

// A device's stream, keyed by (seed, device[, round, step]) so that the in-process engine and a
// device run as its own process (cl_device.h) draw the same: its delay in [0, max_delay_rounds],
// the task it learns at `round` (it enters task t at round t·R + delay), and the training rows
// of minibatch `step` in `round` (indices.size() rows of its slice of the task's set).
int DeviceDelay(const v1::ContinualConfig& config, uint64_t seed, int device);
int TaskAtRound(const v1::ContinualConfig& config, int num_tasks, int delay, int64_t round);
void DrawBatchIndices(const v1::ContinualConfig& config, int pool_size, uint64_t seed, int device,
                      int64_t round, int step, std::vector<int>& indices);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_WORLD_CL_TASKS_H_
