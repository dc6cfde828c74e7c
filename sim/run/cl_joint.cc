#include "sim/run/cl_joint.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/data/batching.h"

namespace fedcl::sim {
namespace {

// Every task's training images in one set (the images keep their task's shift).
data::Dataset UnionOfTasks(const std::vector<ClTask>& tasks) {
  const data::Dataset& first = tasks[0].train;
  data::Dataset all{.num_classes = first.num_classes,
                    .channels = first.channels,
                    .height = first.height,
                    .width = first.width};
  int64_t rows = 0;
  for (const ClTask& t : tasks) rows += t.train.size();
  all.images.resize(rows, first.images.cols());
  int64_t at = 0;
  for (const ClTask& t : tasks) {
    all.images.middleRows(at, t.train.size()) = t.train.images;
    all.labels.insert(all.labels.end(), t.train.labels.begin(), t.train.labels.end());
    at += t.train.size();
  }
  return all;
}

// The classes of every task (empty when a task has all of them: domains).
std::vector<int> AllClasses(const std::vector<ClTask>& tasks) {
  std::set<int> classes;
  for (const ClTask& t : tasks) {
    if (t.classes.empty()) return {};
    classes.insert(t.classes.begin(), t.classes.end());
  }
  return {classes.begin(), classes.end()};
}

}  // namespace

absl::StatusOr<ClRunResult> RunJointBound(const Scenario& scenario, const SimulationInputs& inputs,
                                          const std::vector<ClTask>& tasks, uint64_t seed,
                                          const ClEngineOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const v1::ContinualConfig& config = scenario.config.continual();
  if (inputs.pretrained == nullptr)
    return absl::InvalidArgumentError("a continual scenario needs model.checkpoint (a ViT)");
  ClRunResult result;
  result.method = kJointBoundMethod;
  result.seed = seed;
  for (const ClTask& t : tasks) result.task_names.push_back(t.name);

  FEDCL_ASSIGN_OR_RETURN(auto model,
                         nn::CopyWithClasses(*inputs.pretrained, inputs.train.num_classes, seed));
  FEDCL_ASSIGN_OR_RETURN(
      auto learner, cl::Learner::Create(std::move(model),
                                        LearnerOptionsFor(config, config.joint_method(), seed)));
  FEDCL_RETURN_IF_ERROR(learner->BeginTask(AllClasses(tasks)));
  const data::Dataset all = UnionOfTasks(tasks);
  // Uniform draws over the union, with replacement: no task order survives into training.
  base::Rng rng = base::Rng::ForStream(seed, {0x701e7});
  std::vector<int> indices(config.batch_size());
  nn::Matrix x;
  std::vector<int32_t> y;
  for (int step = 0; step < config.joint_steps(); ++step) {
    for (int& i : indices) i = static_cast<int>(rng.UniformInt(static_cast<uint64_t>(all.size())));
    FEDCL_RETURN_IF_ERROR(data::GatherBatch(all, indices, &x, &y));
    FEDCL_RETURN_IF_ERROR(learner->Learn(x, y).status());
  }

  std::vector<double> row;
  for (const ClTask& t : tasks) {
    FEDCL_ASSIGN_OR_RETURN(double accuracy, TaskAccuracy(*learner, t.test));
    row.push_back(accuracy);
  }
  result.accuracy.assign(tasks.size(), row);
  std::vector<double> sizes;
  for (const ClTask& t : tasks) sizes.push_back(static_cast<double>(t.test.size()));
  FEDCL_ASSIGN_OR_RETURN(result.metrics, cl::ComputeContinualMetrics(result.accuracy, sizes));
  if (options.progress) {
    std::fprintf(stderr, "  %s (%s, %d steps) seed %llu:", kJointBoundMethod,
                 config.joint_method().c_str(), config.joint_steps(),
                 static_cast<unsigned long long>(seed));
    for (double a : row) std::fprintf(stderr, " %.3f", a);
    std::fprintf(stderr, "\n");
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace fedcl::sim
