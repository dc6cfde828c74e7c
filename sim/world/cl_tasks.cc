#include "sim/world/cl_tasks.h"

#include <algorithm>
#include <numeric>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"

namespace fedcl::sim {

absl::StatusOr<std::vector<int>> ParseClassList(const std::string& text, int num_classes) {
  std::vector<int> classes;
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("continual.task '", text,
                     "': expected classes like \"0-4\" or \"5,7\" in [0, ", num_classes, ")"));
  };
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> range = absl::StrSplit(part, '-');
    int lo = 0, hi = 0;
    if (range.size() > 2 || !absl::SimpleAtoi(range[0], &lo) ||
        !absl::SimpleAtoi(range.back(), &hi) || lo > hi || lo < 0 || hi >= num_classes) {
      return bad();
    }
    for (int c = lo; c <= hi; ++c) classes.push_back(c);
  }
  if (classes.empty()) return bad();
  return classes;
}

absl::Status ValidateTasks(const v1::ContinualConfig& c, int num_classes) {
  if (c.kind() == "domains") {
    if (c.shift_size() == 0 || c.task_size() != 0)
      return absl::InvalidArgumentError(
          "continual: kind \"domains\" needs one or more `shift` entries and no `task`");
    for (const std::string& s : c.shift()) {
      absl::StatusOr<data::Shift> shift = data::ParseShift(s);
      if (!shift.ok() || *shift == data::Shift::kNone)
        return absl::InvalidArgumentError(absl::StrCat(
            "continual.shift '", s, "' (expected inversion, rotation, noise or blur)"));
    }
    return absl::OkStatus();
  }
  if (c.kind() == "classes") {
    if (c.task_size() < 2 || c.shift_size() != 0)
      return absl::InvalidArgumentError(
          "continual: kind \"classes\" needs two or more `task` entries and no `shift`");
    std::set<int> seen;
    for (const std::string& t : c.task()) {
      FEDCL_ASSIGN_OR_RETURN(std::vector<int> classes, ParseClassList(t, num_classes));
      for (int k : classes) {
        if (!seen.insert(k).second)
          return absl::InvalidArgumentError(
              absl::StrCat("continual.task: class ", k, " is in two tasks"));
      }
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("continual.kind '", c.kind(), "' (expected domains or classes)"));
}

absl::StatusOr<std::vector<ClTask>> BuildTasks(const v1::ContinualConfig& c, int devices,
                                               const data::Dataset& train,
                                               const data::Dataset& test, uint64_t seed) {
  std::vector<ClTask> tasks;
  // n images from `first` on, wrapping around.
  auto slice = [](const data::Dataset& d, int64_t first, int n) {
    std::vector<int> idx(std::min(n, d.size()));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int>((first + i) % d.size());
    return data::Subset(d, idx);
  };
  const int pool = devices * c.samples_per_task();
  if (c.kind() == "domains") {
    std::vector<data::Shift> shifts = {data::Shift::kNone};
    for (const std::string& s : c.shift()) shifts.push_back(*data::ParseShift(s));
    for (size_t t = 0; t < shifts.size(); ++t) {
      ClTask task;
      task.shift = shifts[t];
      task.name = t == 0 ? "clean" : std::string(data::ShiftName(shifts[t]));
      // Each domain draws its own images, so no image recurs across tasks while they last.
      FEDCL_ASSIGN_OR_RETURN(task.train, slice(train, int64_t{pool} * t, pool));
      FEDCL_ASSIGN_OR_RETURN(task.test, slice(test, 0, c.eval_samples()));
      base::Rng rng = base::Rng::ForStream(seed, {0x5417, t});
      FEDCL_RETURN_IF_ERROR(data::ApplyShift(task.shift, task.train, rng));
      FEDCL_RETURN_IF_ERROR(data::ApplyShift(task.shift, task.test, rng));
      tasks.push_back(std::move(task));
    }
    return tasks;
  }
  for (const std::string& t : c.task()) {
    ClTask task;
    FEDCL_ASSIGN_OR_RETURN(task.classes, ParseClassList(t, train.num_classes));
    task.name = absl::StrCat("classes ", t);
    FEDCL_ASSIGN_OR_RETURN(data::Dataset all_train,
                           data::SelectClasses(train, task.classes, false));
    FEDCL_ASSIGN_OR_RETURN(task.train, slice(all_train, 0, pool));
    FEDCL_ASSIGN_OR_RETURN(data::Dataset all_test, data::SelectClasses(test, task.classes, false));
    FEDCL_ASSIGN_OR_RETURN(task.test, slice(all_test, 0, c.eval_samples()));
    tasks.push_back(std::move(task));
  }
  return tasks;
}

int DeviceDelay(const v1::ContinualConfig& config, uint64_t seed, int device) {
  base::Rng rng = base::Rng::ForStream(seed, {0xde1a, static_cast<uint64_t>(device)});
  return static_cast<int>(rng.UniformInt(config.max_delay_rounds() + 1));
}

int TaskAtRound(const v1::ContinualConfig& config, int num_tasks, int delay, int64_t round) {
  if (round < delay) return 0;
  return static_cast<int>(
      std::min<int64_t>(num_tasks - 1, (round - delay) / config.rounds_per_task()));
}

void DrawBatchIndices(const v1::ContinualConfig& config, int pool_size, uint64_t seed, int device,
                      int64_t round, int step, std::vector<int>& indices) {
  base::Rng rng =
      base::Rng::ForStream(seed, {0xba7c, static_cast<uint64_t>(device),
                                  static_cast<uint64_t>(round), static_cast<uint64_t>(step)});
  const int per_device = config.samples_per_task();
  for (int& i : indices)
    i = (device * per_device + static_cast<int>(rng.UniformInt(per_device))) % pool_size;
}

}  // namespace fedcl::sim
