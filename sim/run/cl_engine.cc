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
  int64_t samples_in_task = 0;    // learned since it entered `task`
  bool grew_in_task = false;      // it grew on `task`'s data already
  std::vector<int64_t> delay_of;  // per task: samples to its first growth (a detection), or -1
  int64_t refusals = 0;           // growths the budget refused
  int64_t false_alarms = 0, clean_samples = 0;  // CountDetection's
  absl::Status error;
};

// One method on one seed (RunContinual).
class ContinualRun {
 public:
  ContinualRun(const Scenario& scenario, const SimulationInputs& inputs,
               const std::vector<ClTask>& tasks, const std::string& method,
               const PatternSpec& pattern, uint64_t seed, const ClEngineOptions& options)
      : scenario_(scenario),
        config_(scenario.config.continual()),
        inputs_(inputs),
        tasks_(tasks),
        method_(method),
        pattern_(pattern),
        seed_(seed),
        options_(options),
        num_devices_(scenario.num_clients()),
        num_tasks_(static_cast<int>(tasks.size())),
        arena_(options.threads > 0 ? options.threads : tbb::info::default_concurrency()) {}

  absl::StatusOr<ClRunResult> Run();

 private:
  absl::Status CreateDevices();
  // The server: the scenario's first aggregator over the method's initial modules (as
  // fedcl-server makes them), and for a growing method the pool. None for a method that shares
  // nothing (its devices learn alone).
  absl::Status CreateServer();
  absl::Status RunRound(int64_t r);
  // Device d's Begin: proposes what it grew, downloads what changed; false without a round.
  absl::StatusOr<bool> Begin(int d, int64_t* round);
  // Learn steps of one participant (thread-safe across devices).
  void Learn(int d, int64_t round);
  // Detection bookkeeping after a batch of `samples` (`grew`: the batch made it grow, or try to).
  static void CountDetection(Device& dev, int64_t samples, bool grew);
  void RecordPool(int64_t rounds_done);
  absl::Status Evaluate(int after_task);
  absl::Status Finish();

  const Scenario& scenario_;
  const v1::ContinualConfig& config_;
  const SimulationInputs& inputs_;
  const std::vector<ClTask>& tasks_;
  const std::string method_;
  const PatternSpec& pattern_;
  const uint64_t seed_;
  const ClEngineOptions options_;
  const int num_devices_, num_tasks_;
  tbb::task_arena arena_;

  cl::LearnerOptions learner_options_;
  std::vector<Device> devices_;
  bool grows_ = false;
  base::ManualClock clock_{absl::UnixEpoch()};
  std::unique_ptr<fl::Coordinator> coordinator_;
  std::unique_ptr<device::InProcessPort> port_;
  std::unique_ptr<ParticipationProcess> participation_;
  ClRunResult result_;
};

absl::StatusOr<ClRunResult> ContinualRun::Run() {
  const auto start = std::chrono::steady_clock::now();
  if (inputs_.pretrained == nullptr)
    return absl::InvalidArgumentError("a continual scenario needs model.checkpoint (a ViT)");
  result_.method = method_;
  result_.seed = seed_;
  for (const ClTask& t : tasks_) result_.task_names.push_back(t.name);
  FEDCL_RETURN_IF_ERROR(CreateDevices());
  FEDCL_RETURN_IF_ERROR(CreateServer());
  const std::vector<float> probabilities(
      num_devices_, static_cast<float>(scenario_.config.participation().p_mean()));
  FEDCL_ASSIGN_OR_RETURN(participation_,
                         ParticipationProcess::Create(pattern_, probabilities, seed_, nullptr));
  const int64_t rounds = int64_t{num_tasks_} * config_.rounds_per_task();
  for (int64_t r = 0; r < rounds; ++r) {
    FEDCL_RETURN_IF_ERROR(RunRound(r));
    if ((r + 1) % config_.rounds_per_task() == 0)
      FEDCL_RETURN_IF_ERROR(Evaluate(static_cast<int>((r + 1) / config_.rounds_per_task()) - 1));
  }
  FEDCL_RETURN_IF_ERROR(Finish());
  result_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return std::move(result_);
}

absl::Status ContinualRun::CreateDevices() {
  // The same initial modules everywhere (one learner seed), each device its own delay.
  learner_options_ = LearnerOptionsFor(config_, method_, seed_);
  devices_ = std::vector<Device>(num_devices_);
  for (int d = 0; d < num_devices_; ++d) {
    FEDCL_ASSIGN_OR_RETURN(
        auto model, nn::CopyWithClasses(*inputs_.pretrained, inputs_.train.num_classes, seed_));
    FEDCL_ASSIGN_OR_RETURN(devices_[d].learner,
                           cl::Learner::Create(std::move(model), learner_options_));
    devices_[d].delay = DeviceDelay(config_, seed_, d);
  }
  grows_ = devices_[0].learner->expansion() != nullptr;
  return absl::OkStatus();
}

absl::Status ContinualRun::CreateServer() {
  std::vector<fl::StoredModule> initial = device::InitialModules(*devices_[0].learner);
  if (initial.empty()) return absl::OkStatus();
  fl::CoordinatorOptions options;
  options.aggregator = scenario_.methods[0].aggregator;
  options.upload_compression = scenario_.methods[0].upload;
  // Every round closes once its participants have synced: this engine is the barrier's one
  // reporter.
  options.round = {.name = "barrier", .round_duration = absl::Hours(1), .reporters = 1};
  if (grows_) {
    FEDCL_ASSIGN_OR_RETURN(options.pool,
                           ContinualPoolOptions(config_, learner_options_,
                                                inputs_.pretrained->backbone().feature_dim()));
  }
  FEDCL_ASSIGN_OR_RETURN(coordinator_,
                         fl::Coordinator::Create(options, clock_, nullptr, std::move(initial)));
  device::ServerInfo info;
  info.protocol = std::string(device::kProtocol);
  port_ = std::make_unique<device::InProcessPort>(*coordinator_, info);
  for (int d = 0; d < num_devices_; ++d) {
    Device& dev = devices_[d];
    dev.session = std::make_unique<device::DeviceSession>(
        device::SessionOptions{.client_id = static_cast<fl::ClientId>(d),
                               .software = "fedcl-sim",
                               .unsent = device::SessionOptions::Unsent::kKeep},
        *dev.learner, device::SessionEnvironment{.port = port_.get(), .mu = &dev.mu});
    FEDCL_RETURN_IF_ERROR(dev.session->Join().status());
  }
  return absl::OkStatus();
}

absl::Status ContinualRun::RunRound(int64_t r) {
  participation_->Advance(r);
  std::vector<uint32_t> participants = participation_->Participants(0, num_devices_);
  int64_t round = r;
  if (coordinator_ != nullptr) {
    // In device order, so that the pool's grouping of proposals does not depend on threads.
    std::vector<uint32_t> ready;
    for (uint32_t d : participants) {
      FEDCL_ASSIGN_OR_RETURN(bool has_work, Begin(static_cast<int>(d), &round));
      if (has_work) ready.push_back(d);
    }
    participants = std::move(ready);
  }
  arena_.execute([&] {
    tbb::parallel_for(size_t{0}, participants.size(),
                      [&](size_t i) { Learn(static_cast<int>(participants[i]), r); });
  });
  for (uint32_t d : participants) FEDCL_RETURN_IF_ERROR(devices_[d].error);
  if (coordinator_ == nullptr) return absl::OkStatus();
  for (uint32_t d : participants) {
    FEDCL_ASSIGN_OR_RETURN(device::SubmitOutcome submitted, devices_[d].session->Submit(round));
    result_.bytes_up += submitted.bytes_uploaded;
  }
  FEDCL_ASSIGN_OR_RETURN(fl::Coordinator::ReportResult reported,
                         coordinator_->Report(0, 1, coordinator_->current_round()));
  FEDCL_RETURN_IF_ERROR(reported.close_status);
  RecordPool(r + 1);
  return absl::OkStatus();
}

absl::StatusOr<bool> ContinualRun::Begin(int d, int64_t* round) {
  FEDCL_ASSIGN_OR_RETURN(device::RoundWork work, devices_[d].session->Begin());
  result_.bytes_down += work.bytes_downloaded;
  if (!work.train) return false;
  *round = work.round;
  return true;
}

void ContinualRun::Learn(int d, int64_t round) {
  Device& dev = devices_[d];
  std::lock_guard<std::mutex> lock(dev.mu);
  const int task = TaskAtRound(config_, num_tasks_, dev.delay, round);
  if (task != dev.task) {
    dev.task = task;
    dev.samples_in_task = 0;
    dev.grew_in_task = false;
    dev.delay_of.resize(num_tasks_, -1);
    if (absl::Status s = dev.learner->BeginTask(tasks_[task].classes); !s.ok()) dev.error = s;
  }
  const data::Dataset& pool = tasks_[task].train;
  nn::Matrix x;
  std::vector<int32_t> y;
  std::vector<int> indices(config_.batch_size());
  for (int step = 0; step < config_.steps_per_round() && dev.error.ok(); ++step) {
    DrawBatchIndices(config_, pool.size(), seed_, d, round, step, indices);
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
    CountDetection(dev, x.rows(), stats->grown_block >= 0 || !stats->refused.ok());
    if (dev.session != nullptr) dev.session->AfterLearnLocked(x.rows(), stats->loss);
  }
  if (dev.session != nullptr && dev.error.ok()) dev.error = dev.session->CommitLocked();
}

void ContinualRun::CountDetection(Device& dev, int64_t samples, bool grew) {
  dev.samples_in_task += samples;
  const bool shift_pending = dev.task > 0 && !dev.grew_in_task;
  if (!shift_pending) dev.clean_samples += samples;
  if (!grew) return;
  if (shift_pending) {
    dev.delay_of[dev.task] = dev.samples_in_task;
    dev.grew_in_task = true;
  } else {
    ++dev.false_alarms;
  }
}

void ContinualRun::RecordPool(int64_t rounds_done) {
  const fl::CoordinatorStatus status = coordinator_->Status();
  PoolPoint point{.round = rounds_done,
                  .modules = static_cast<int64_t>(status.pool.size()),
                  .merges = status.pool_merges};
  if (grows_) {
    for (Device& dev : devices_) {
      for (int a : dev.learner->expansion()->AdaptersPerBlock()) point.adapters_per_device += a;
    }
    point.adapters_per_device /= num_devices_;
  }
  result_.pool.push_back(point);
}

// LAE's online module alone, beside its ensemble.
absl::StatusOr<double> OnlineAccuracy(cl::Learner& learner, const data::Dataset& test) {
  FEDCL_RETURN_IF_ERROR(learner.SetMethodOption("inference", "online"));
  absl::StatusOr<double> accuracy = TaskAccuracy(learner, test);
  FEDCL_RETURN_IF_ERROR(learner.SetMethodOption("inference", "ensemble"));
  return accuracy;
}

absl::Status ContinualRun::Evaluate(int after_task) {
  const int eval_devices = std::min(num_devices_, config_.eval_devices());
  std::vector<std::vector<double>> acc(eval_devices, std::vector<double>(num_tasks_, 0.0));
  std::vector<std::vector<double>> online(eval_devices, std::vector<double>(num_tasks_, 0.0));
  std::vector<absl::Status> errors(eval_devices);
  if (coordinator_ != nullptr) {
    for (int d = 0; d < eval_devices; ++d) {  // the model as the device's next sync gives it
      int64_t ignored = 0;
      FEDCL_RETURN_IF_ERROR(Begin(d, &ignored).status());
    }
  }
  const bool lae = method_ == "lae";
  arena_.execute([&] {
    tbb::parallel_for(0, eval_devices, [&](int d) {
      cl::Learner& learner = *devices_[d].learner;
      for (int j = 0; j < num_tasks_ && errors[d].ok(); ++j) {
        absl::StatusOr<double> a = TaskAccuracy(learner, tasks_[j].test);
        if (!a.ok()) errors[d] = a.status();
        acc[d][j] = a.value_or(0.0);
        if (!lae) continue;
        absl::StatusOr<double> o = OnlineAccuracy(learner, tasks_[j].test);
        if (!o.ok()) errors[d] = o.status();
        online[d][j] = o.value_or(0.0);
      }
    });
  });
  for (const absl::Status& e : errors) FEDCL_RETURN_IF_ERROR(e);
  std::vector<double> row(num_tasks_, 0.0), online_row(num_tasks_, 0.0);
  for (int d = 0; d < eval_devices; ++d) {
    for (int j = 0; j < num_tasks_; ++j) {
      row[j] += acc[d][j] / eval_devices;
      online_row[j] += online[d][j] / eval_devices;
    }
  }
  result_.accuracy.push_back(row);
  if (lae) result_.online_accuracy.push_back(online_row);
  if (options_.progress) {
    std::fprintf(stderr, "  %s seed %llu after task %d (%s):", method_.c_str(),
                 static_cast<unsigned long long>(seed_), after_task,
                 tasks_[after_task].name.c_str());
    for (double a : row) std::fprintf(stderr, " %.3f", a);
    std::fprintf(stderr, "\n");
  }
  if (after_task == 0) {
    FEDCL_ASSIGN_OR_RETURN(result_.ood, ScoreDetectors(*devices_[0].learner, config_, tasks_));
  }
  return absl::OkStatus();
}

absl::Status ContinualRun::Finish() {
  if (grows_) {
    for (int t = 1; t < num_tasks_; ++t) {
      ExpansionDetection& detection = result_.expansion.emplace_back();
      detection.task = tasks_[t].name;
      for (const Device& dev : devices_) {
        if (dev.task < t) continue;  // never reached task t (tasks come in order)
        ++detection.devices;
        if (dev.delay_of[t] >= 0) detection.delays.push_back(dev.delay_of[t]);
      }
    }
    for (const Device& dev : devices_) {
      result_.expansion_false_alarms += dev.false_alarms;
      result_.expansion_clean_samples += dev.clean_samples;
    }
  }
  for (Device& dev : devices_) {
    result_.growth_refusals += dev.refusals;
    if (dev.session == nullptr) continue;
    std::lock_guard<std::mutex> lock(dev.mu);
    result_.proposals += dev.session->CountersLocked().proposals;
    result_.bytes_up += dev.session->CountersLocked().growth_bytes_uploaded;
  }
  std::vector<double> sizes;
  for (const ClTask& t : tasks_) sizes.push_back(static_cast<double>(t.test.size()));
  FEDCL_ASSIGN_OR_RETURN(result_.metrics, cl::ComputeContinualMetrics(result_.accuracy, sizes));
  if (method_ == "lae") {
    FEDCL_ASSIGN_OR_RETURN(result_.online_metrics,
                           cl::ComputeContinualMetrics(result_.online_accuracy, sizes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> TaskAccuracy(cl::Learner& learner, const data::Dataset& test) {
  FEDCL_ASSIGN_OR_RETURN(std::vector<cl::Prediction> p, learner.Predict(test.images));
  int64_t correct = 0;
  for (size_t i = 0; i < p.size(); ++i) correct += p[i].label == test.labels[i];
  return static_cast<double>(correct) / static_cast<double>(p.size());
}

absl::StatusOr<ClRunResult> RunContinual(const Scenario& scenario, const SimulationInputs& inputs,
                                         const std::vector<ClTask>& tasks,
                                         const std::string& method, const PatternSpec& pattern,
                                         uint64_t seed, const ClEngineOptions& options) {
  ContinualRun run(scenario, inputs, tasks, method, pattern, seed, options);
  return run.Run();
}

}  // namespace fedcl::sim
