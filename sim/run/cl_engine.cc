#include "sim/run/cl_engine.h"

#include <chrono>
#include <cstdio>

#include <mutex>

#include "core/base/clock.h"
#include "core/base/status_macros.h"
#include "core/device/device_session.h"
#include "core/device/in_process_port.h"
#include "core/device/initial_modules.h"
#include "core/fl/coordinator.h"
#include "sim/run/cl_ood.h"
#include "tbb/parallel_for.h"
#include "tbb/task_arena.h"

namespace fedcl::sim {
namespace {

// One device: its learner, and the session that syncs it — the code the SDK and fedcl-client run.
struct Device {
  std::unique_ptr<cl::Learner> learner;
  std::unique_ptr<device::DeviceSession> session;
  std::mutex mu;  // the session's; uncontended (one thread per device at a time)
  int delay = 0;
  int task = -1;
  int64_t refusals = 0;  // growths the budget refused
  absl::Status error;
};

}  // namespace

absl::StatusOr<ClRunResult> RunContinual(const Scenario& scenario, const SimulationInputs& inputs,
                                         const std::vector<ClTask>& tasks,
                                         const std::string& method, const PatternSpec& pattern,
                                         uint64_t seed, const ClEngineOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const v1::ContinualConfig& c = scenario.config.continual();
  if (inputs.pretrained == nullptr)
    return absl::InvalidArgumentError("a continual scenario needs model.checkpoint (a ViT)");
  const int num_devices = scenario.num_clients();
  const int num_tasks = static_cast<int>(tasks.size());
  const int rounds_per_task = c.rounds_per_task();
  const int num_classes = inputs.train.num_classes;
  ClRunResult result;
  result.method = method;
  result.seed = seed;
  for (const ClTask& t : tasks) result.task_names.push_back(t.name);

  // Devices: the same initial modules everywhere (one learner seed), their own delays.
  const cl::LearnerOptions learner_options = LearnerOptionsFor(c, method, seed);
  std::vector<Device> devices(num_devices);
  for (int d = 0; d < num_devices; ++d) {
    FEDCL_ASSIGN_OR_RETURN(auto model, nn::CopyWithClasses(*inputs.pretrained, num_classes, seed));
    FEDCL_ASSIGN_OR_RETURN(devices[d].learner,
                           cl::Learner::Create(std::move(model), learner_options));
    devices[d].delay = DeviceDelay(c, seed, d);
  }
  const bool grows = devices[0].learner->expansion() != nullptr;

  // The server: the scenario's first aggregator over the method's initial modules (as
  // fedcl-server makes them), and for a growing method the pool.
  base::ManualClock clock(absl::UnixEpoch());
  fl::CoordinatorOptions coordinator_options;
  coordinator_options.aggregator = scenario.methods[0].aggregator;
  // Every round closes once its participants have synced: this engine is the barrier's one
  // reporter.
  coordinator_options.round = {.name = "barrier", .round_duration = absl::Hours(1), .reporters = 1};
  if (grows) {
    FEDCL_ASSIGN_OR_RETURN(coordinator_options.pool,
                           ContinualPoolOptions(c, learner_options,
                                                inputs.pretrained->backbone().feature_dim()));
  }
  std::vector<fl::StoredModule> initial = device::InitialModules(*devices[0].learner);
  std::unique_ptr<fl::Coordinator> coordinator;
  std::unique_ptr<device::InProcessPort> port;
  if (!initial.empty()) {
    FEDCL_ASSIGN_OR_RETURN(coordinator, fl::Coordinator::Create(coordinator_options, clock, nullptr,
                                                                std::move(initial)));
    device::ServerInfo info;
    info.protocol = std::string(device::kProtocol);
    port = std::make_unique<device::InProcessPort>(*coordinator, info);
    for (int d = 0; d < num_devices; ++d) {
      Device& dev = devices[d];
      dev.session = std::make_unique<device::DeviceSession>(
          device::SessionOptions{.client_id = static_cast<fl::ClientId>(d),
                                 .software = "fedcl-sim",
                                 .unsent = device::SessionOptions::Unsent::kKeep},
          *dev.learner, device::SessionEnvironment{.port = port.get(), .mu = &dev.mu});
      FEDCL_RETURN_IF_ERROR(dev.session->Join().status());
    }
  }

  const std::vector<float> probabilities(
      num_devices, static_cast<float>(scenario.config.participation().p_mean()));
  FEDCL_ASSIGN_OR_RETURN(auto participation,
                         ParticipationProcess::Create(pattern, probabilities, seed, nullptr));
  tbb::task_arena arena(options.threads > 0 ? options.threads : tbb::info::default_concurrency());

  // Device d's Begin: proposes what it grew, downloads what changed; false without a round.
  auto begin = [&](int d, int64_t* round) -> absl::StatusOr<bool> {
    FEDCL_ASSIGN_OR_RETURN(device::RoundWork work, devices[d].session->Begin());
    result.bytes_down += work.bytes_downloaded;
    if (!work.train) return false;
    *round = work.round;
    return true;
  };

  // Learn steps of one participant (thread-safe across devices).
  auto learn = [&](int d, int64_t round) {
    Device& dev = devices[d];
    std::lock_guard<std::mutex> lock(dev.mu);
    const int task = TaskAtRound(c, num_tasks, dev.delay, round);
    if (task != dev.task) {
      dev.task = task;
      if (absl::Status s = dev.learner->BeginTask(tasks[task].classes); !s.ok()) dev.error = s;
    }
    const data::Dataset& pool = tasks[task].train;
    nn::Matrix x;
    std::vector<int32_t> y;
    std::vector<int> indices(c.batch_size());
    for (int step = 0; step < c.steps_per_round() && dev.error.ok(); ++step) {
      DrawBatchIndices(c, pool.size(), seed, d, round, step, indices);
      if (absl::Status s = data::GatherBatch(pool, indices, &x, &y); !s.ok()) {
        dev.error = s;
        return;
      }
      absl::StatusOr<cl::LearnStats> stats = dev.learner->Learn(x, y);
      if (!stats.ok()) {
        dev.error = stats.status();
        return;
      }
      if (!stats->refused.ok()) ++dev.refusals;
      if (dev.session != nullptr) dev.session->AfterLearnLocked(x.rows(), stats->loss);
    }
    if (dev.session != nullptr && dev.error.ok()) dev.error = dev.session->CommitLocked();
  };

  auto evaluate = [&](int after_task) -> absl::Status {
    const int eval_devices = std::min(num_devices, c.eval_devices());
    std::vector<std::vector<double>> acc(eval_devices, std::vector<double>(num_tasks, 0.0));
    std::vector<std::vector<double>> online(eval_devices, std::vector<double>(num_tasks, 0.0));
    std::vector<absl::Status> errors(eval_devices);
    if (coordinator != nullptr) {
      for (int d = 0; d < eval_devices; ++d) {  // the model as the device's next sync gives it
        int64_t ignored = 0;
        FEDCL_RETURN_IF_ERROR(begin(d, &ignored).status());
      }
    }
    auto accuracy = [&](cl::Learner& learner, const data::Dataset& test) -> absl::StatusOr<double> {
      FEDCL_ASSIGN_OR_RETURN(std::vector<cl::Prediction> p, learner.Predict(test.images));
      int64_t correct = 0;
      for (size_t i = 0; i < p.size(); ++i) correct += p[i].label == test.labels[i];
      return static_cast<double>(correct) / static_cast<double>(p.size());
    };
    const bool lae = method == "lae";
    arena.execute([&] {
      tbb::parallel_for(0, eval_devices, [&](int d) {
        cl::Learner& learner = *devices[d].learner;
        for (int j = 0; j < num_tasks && errors[d].ok(); ++j) {
          absl::StatusOr<double> a = accuracy(learner, tasks[j].test);
          if (!a.ok()) errors[d] = a.status();
          acc[d][j] = a.value_or(0.0);
          if (!lae) continue;
          // LAE's online module alone, beside its ensemble.
          absl::StatusOr<double> o = learner.SetMethodOption("inference", "online").ok()
                                         ? accuracy(learner, tasks[j].test)
                                         : absl::InternalError("LAE refused inference: online");
          errors[d].Update(learner.SetMethodOption("inference", "ensemble"));
          if (!o.ok()) errors[d] = o.status();
          online[d][j] = o.value_or(0.0);
        }
      });
    });
    for (const absl::Status& e : errors) FEDCL_RETURN_IF_ERROR(e);
    std::vector<double> row(num_tasks, 0.0), online_row(num_tasks, 0.0);
    for (int d = 0; d < eval_devices; ++d) {
      for (int j = 0; j < num_tasks; ++j) {
        row[j] += acc[d][j] / eval_devices;
        online_row[j] += online[d][j] / eval_devices;
      }
    }
    result.accuracy.push_back(row);
    if (lae) result.online_accuracy.push_back(online_row);
    if (options.progress) {
      std::fprintf(stderr, "  %s seed %llu after task %d (%s):", result.method.c_str(),
                   static_cast<unsigned long long>(seed), after_task,
                   tasks[after_task].name.c_str());
      for (double a : row) std::fprintf(stderr, " %.3f", a);
      std::fprintf(stderr, "\n");
    }
    if (after_task == 0) {
      FEDCL_ASSIGN_OR_RETURN(result.ood, ScoreDetectors(*devices[0].learner, c, tasks));
    }
    return absl::OkStatus();
  };

  const int64_t rounds = int64_t{num_tasks} * rounds_per_task;
  for (int64_t r = 0; r < rounds; ++r) {
    participation->Advance(r);
    std::vector<uint32_t> participants = participation->Participants(0, num_devices);
    int64_t round = r;
    if (coordinator != nullptr) {
      // In device order, so that the pool's grouping of proposals does not depend on threads.
      std::vector<uint32_t> ready;
      for (uint32_t d : participants) {
        FEDCL_ASSIGN_OR_RETURN(bool has_work, begin(static_cast<int>(d), &round));
        if (has_work) ready.push_back(d);
      }
      participants = std::move(ready);
    }
    arena.execute([&] {
      tbb::parallel_for(size_t{0}, participants.size(),
                        [&](size_t i) { learn(static_cast<int>(participants[i]), r); });
    });
    for (uint32_t d : participants) FEDCL_RETURN_IF_ERROR(devices[d].error);
    if (coordinator != nullptr) {
      for (uint32_t d : participants) {
        FEDCL_ASSIGN_OR_RETURN(device::SubmitOutcome submitted,
                               devices[d].session->Submit(round));
        result.bytes_up += submitted.bytes_uploaded;
      }
      FEDCL_ASSIGN_OR_RETURN(fl::Coordinator::ReportResult reported,
                             coordinator->Report(0, 1, coordinator->current_round()));
      FEDCL_RETURN_IF_ERROR(reported.close_status);
      const fl::CoordinatorStatus status = coordinator->Status();
      PoolPoint point{.round = r + 1,
                      .modules = static_cast<int64_t>(status.pool.size()),
                      .merges = status.pool_merges};
      if (grows) {
        for (Device& dev : devices) {
          for (int a : dev.learner->expansion()->AdaptersPerBlock()) point.adapters_per_device += a;
        }
        point.adapters_per_device /= num_devices;
      }
      result.pool.push_back(point);
    }
    if ((r + 1) % rounds_per_task == 0)
      FEDCL_RETURN_IF_ERROR(evaluate(static_cast<int>((r + 1) / rounds_per_task) - 1));
  }

  for (Device& dev : devices) {
    result.growth_refusals += dev.refusals;
    if (dev.session == nullptr) continue;
    std::lock_guard<std::mutex> lock(dev.mu);
    result.proposals += dev.session->CountersLocked().proposals;
  }
  std::vector<double> sizes;
  for (const ClTask& t : tasks) sizes.push_back(static_cast<double>(t.test.size()));
  FEDCL_ASSIGN_OR_RETURN(result.metrics, cl::ComputeContinualMetrics(result.accuracy, sizes));
  if (method == "lae") {
    FEDCL_ASSIGN_OR_RETURN(result.online_metrics,
                           cl::ComputeContinualMetrics(result.online_accuracy, sizes));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace fedcl::sim
