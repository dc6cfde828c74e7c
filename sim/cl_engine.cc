#include "sim/cl_engine.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/clock.h"
#include "core/base/status_macros.h"
#include "core/fl/coordinator.h"
#include "sim/cl_ood.h"
#include "tbb/parallel_for.h"
#include "tbb/task_arena.h"

namespace fedcl::sim {
namespace {

// One device: its learner and what it holds of the server's modules.
struct Device {
  std::unique_ptr<cl::Learner> learner;
  int delay = 0;
  int task = -1;
  std::map<std::string, int64_t> held;                     // module → version
  std::map<std::string, Eigen::VectorXf> base;             // values as downloaded
  std::map<std::string, std::pair<int, int>> expert_slot;  // pool expert → (block, index)
  std::set<std::string> not_installed;                     // pooled experts it refused
  std::set<std::string> descriptor_pending;  // experts it grew whose descriptor is not sent
  std::set<std::string> descriptor_refused;  // pooled descriptors its learner cannot use
  double loss_sum = 0;
  int64_t steps = 0, samples = 0;
  absl::Status error;
};

// The learner's set a server module name refers to, or null.
nn::ParameterSet* LocalSet(Device& d, const std::string& name) {
  if (auto slot = d.expert_slot.find(name); slot != d.expert_slot.end())
    return d.learner->Expert(slot->second.first, slot->second.second);
  for (nn::ParameterSet* s : d.learner->SharedModules())
    if (s->name() == name) return s;
  return nullptr;
}

// "block<b>/m<id>" → b.
absl::StatusOr<int> BlockOf(const std::string& name) {
  int block = 0;
  const size_t slash = name.find('/');
  if (name.rfind("block", 0) != 0 || slash == std::string::npos ||
      !absl::SimpleAtoi(name.substr(5, slash - 5), &block)) {
    return absl::InternalError(absl::StrCat("expert module '", name, "' names no block"));
  }
  return block;
}

absl::Status Install(Device& d, const fl::ModuleSpec& spec, const nn::ParameterSet& values,
                     const nn::ParameterSet* descriptor) {
  if (spec.role == fl::ModuleRole::kExpert && !d.expert_slot.contains(spec.name)) {
    FEDCL_ASSIGN_OR_RETURN(int block, BlockOf(spec.name));
    // With its founder's descriptor, so that this device's detection knows the shift it serves;
    // without it if the learner cannot use or hold it.
    absl::StatusOr<int> index = d.learner->AddPooledExpert(block, values, descriptor);
    if (!index.ok() && descriptor != nullptr) {
      d.descriptor_refused.insert(spec.name);
      index = d.learner->AddPooledExpert(block, values);
    }
    if (absl::IsResourceExhausted(index.status())) {
      d.not_installed.insert(spec.name);  // at its cap: it runs without this adapter
      return absl::OkStatus();
    }
    FEDCL_RETURN_IF_ERROR(index.status());
    d.expert_slot[spec.name] = {block, *index};
    return absl::OkStatus();
  }
  nn::ParameterSet* local = LocalSet(d, spec.name);
  if (local == nullptr)
    return absl::InternalError(absl::StrCat("the device has no module '", spec.name, "'"));
  FEDCL_RETURN_IF_ERROR(local->CheckSameLayout(values));
  local->flat_values() = values.flat_values();
  return absl::OkStatus();
}

}  // namespace

cl::LearnerOptions LearnerOptionsFor(const v1::ContinualConfig& config, cl::ClMethod method,
                                     uint64_t seed) {
  const v1::ClLearnerConfig& l = config.learner();
  cl::LearnerOptions o;
  o.method = method;
  o.learning_rate = l.learning_rate();
  o.expansion_tau = l.expansion_tau();
  o.new_module_steps = l.new_module_steps();
  o.adapter_bottleneck = l.adapter_bottleneck();
  o.descriptor_bottleneck = l.descriptor_bottleneck();
  o.growth.max_adapters_per_block = l.max_adapters_per_block();
  o.confirm_batches = l.confirm_batches();
  o.lae_fraction_per_task = l.lae_fraction_per_task();
  // A task is R rounds of about p·R·steps steps; LAE's α spreads the fraction over that.
  o.lae_steps_per_task =
      std::max<int64_t>(1, int64_t{config.rounds_per_task()} * config.steps_per_round() / 2);
  o.lae_warmup_steps = static_cast<int>(o.lae_steps_per_task / 10);
  o.fedins_pool_size = l.fedins_pool_size();
  o.fedins_top_k = l.fedins_top_k();
  o.seed = seed;
  return o;
}

absl::StatusOr<ClRunResult> RunContinual(const Scenario& scenario, const SimulationInputs& inputs,
                                         const std::vector<ClTask>& tasks, cl::ClMethod method,
                                         const PatternSpec& pattern, uint64_t seed,
                                         const ClEngineOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const v1::ContinualConfig& c = scenario.config.continual();
  if (inputs.pretrained == nullptr)
    return absl::InvalidArgumentError("a continual scenario needs model.checkpoint (a ViT)");
  const int num_devices = scenario.num_clients();
  const int num_tasks = static_cast<int>(tasks.size());
  const int rounds_per_task = c.rounds_per_task();
  const int num_classes = inputs.train.num_classes;
  ClRunResult result;
  result.method = std::string(cl::ClMethodName(method));
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

  // The server: the scenario's first aggregator over the learners' shared modules.
  base::ManualClock clock(absl::UnixEpoch());
  fl::CoordinatorOptions coordinator_options;
  coordinator_options.aggregator = scenario.methods[0].aggregator;
  // Every round closes once its participants have synced: this engine is the barrier's one
  // reporter.
  coordinator_options.round = {.name = "barrier", .round_duration = absl::Hours(1), .reporters = 1};
  if (cl::IsSema(method)) {
    coordinator_options.pool.expandable_blocks = learner_options.expandable_blocks;
    coordinator_options.pool.statistics_dim = inputs.pretrained->backbone().feature_dim();
    coordinator_options.pool.capacity = c.pool().capacity();
    coordinator_options.pool.round_window = c.pool().round_window();
    coordinator_options.pool.divergence_threshold = c.pool().divergence_threshold();
    coordinator_options.pool.expert_bottleneck = learner_options.adapter_bottleneck;
  }
  std::vector<fl::StoredModule> initial;
  for (nn::ParameterSet* s : devices[0].learner->SharedModules()) {
    fl::StoredModule m;
    m.spec.name = s->name();
    // SEMA's first adapters are the pool's base experts, as pool.base_experts makes them on the
    // server, and FedIns' sets its instance pool, as the fedins section does; the other
    // methods' adapters are plain modules.
    m.spec.role = s->name() == "head"               ? fl::ModuleRole::kHead
                  : cl::IsSema(method)              ? fl::ModuleRole::kBaseExpert
                  : method == cl::ClMethod::kFedIns ? fl::ModuleRole::kInstancePool
                                                    : fl::ModuleRole::kPet;
    m.values = *s;
    initial.push_back(std::move(m));
  }
  std::unique_ptr<fl::Coordinator> coordinator;
  if (!initial.empty()) {
    FEDCL_ASSIGN_OR_RETURN(coordinator, fl::Coordinator::Create(coordinator_options, clock, nullptr,
                                                                std::move(initial)));
    for (int d = 0; d < num_devices; ++d)
      FEDCL_RETURN_IF_ERROR(coordinator->Enroll(static_cast<fl::ClientId>(d)).status());
  }

  const std::vector<float> probabilities(
      num_devices, static_cast<float>(scenario.config.participation().p_mean()));
  FEDCL_ASSIGN_OR_RETURN(auto participation,
                         ParticipationProcess::Create(pattern, probabilities, seed, nullptr));
  tbb::task_arena arena(options.threads > 0 ? options.threads : tbb::info::default_concurrency());

  // Downloads what changed for device d; false if the coordinator has no work for it.
  auto sync_down = [&](int d, int64_t* round) -> absl::StatusOr<bool> {
    Device& dev = devices[d];
    std::vector<fl::ModuleVersion> held;
    for (const auto& [name, version] : dev.held) held.push_back({name, version});
    FEDCL_ASSIGN_OR_RETURN(fl::WorkAssignment work,
                           coordinator->GetWork(static_cast<fl::ClientId>(d), held));
    if (work.action != fl::WorkAssignment::Action::kTrain) return false;
    *round = work.round;
    for (const fl::ModuleInfo& info : work.modules) {
      if (dev.not_installed.contains(info.spec.name)) continue;
      // A pooled adapter this device runs without a descriptor takes the one the pool now has.
      const auto slot = dev.expert_slot.find(info.spec.name);
      const bool descriptor_wanted =
          info.has_descriptor && slot != dev.expert_slot.end() &&
          !dev.descriptor_refused.contains(info.spec.name) &&
          !dev.learner->ExpertHasDescriptor(slot->second.first, slot->second.second);
      if (!info.download && !descriptor_wanted) continue;
      FEDCL_ASSIGN_OR_RETURN(fl::ModuleSnapshot snapshot,
                             coordinator->GetModule(info.spec.name, info.version));
      if (descriptor_wanted) {
        result.bytes_down += snapshot.descriptor->num_values() * int64_t{sizeof(float)};
        if (!dev.learner
                 ->AttachPooledDescriptor(slot->second.first, slot->second.second,
                                          *snapshot.descriptor)
                 .ok()) {
          dev.descriptor_refused.insert(info.spec.name);  // it detects without this one
        }
        if (!info.download) continue;
      }
      const bool new_expert = snapshot.spec.role == fl::ModuleRole::kExpert &&
                              !dev.expert_slot.contains(snapshot.spec.name);
      const nn::ParameterSet* descriptor = new_expert ? snapshot.descriptor.get() : nullptr;
      FEDCL_RETURN_IF_ERROR(Install(dev, snapshot.spec, *snapshot.values, descriptor));
      if (descriptor != nullptr)
        result.bytes_down += descriptor->num_values() * int64_t{sizeof(float)};
      dev.held[info.spec.name] = info.version;
      dev.base[info.spec.name] = snapshot.values->flat_values();
      result.bytes_down += snapshot.values->num_values() * int64_t{sizeof(float)};
    }
    return true;
  };

  // Learn steps of one participant (thread-safe across devices).
  auto learn = [&](int d, int64_t round) {
    Device& dev = devices[d];
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
      dev.loss_sum += stats->loss;
      ++dev.steps;
      dev.samples += x.rows();
      if (!stats->refused.ok()) ++result.growth_refusals;
    }
  };

  // Proposals and the update of device d, in device order.
  auto sync_up = [&](int d, int64_t round) -> absl::Status {
    Device& dev = devices[d];
    for (cl::ModuleProposal& p : dev.learner->TakeProposals()) {
      fl::ModuleProposal proposal;
      proposal.client = static_cast<fl::ClientId>(d);
      proposal.round = round;
      proposal.block = p.block;
      proposal.spec.role = fl::ModuleRole::kExpert;
      proposal.values = p.expert;
      proposal.statistics = {p.mean, p.variance};
      ++result.proposals;
      absl::StatusOr<fl::ProposalResult> proposed = coordinator->ProposeModule(proposal);
      if (absl::IsResourceExhausted(proposed.status())) continue;  // pool at capacity: local
      FEDCL_RETURN_IF_ERROR(proposed.status());
      dev.expert_slot[proposed->name] = {p.block, p.index};
      dev.descriptor_pending.insert(proposed->name);
      result.bytes_up += p.expert.num_values() * int64_t{sizeof(float)};
      if (proposed->merged) {
        // The group's module replaces the device's own: its members train that one module.
        int64_t ignored = 0;
        FEDCL_RETURN_IF_ERROR(sync_down(d, &ignored).status());
      } else {
        dev.held[proposed->name] = 0;
        dev.base[proposed->name] = p.expert.flat_values();
      }
    }
    // The descriptors of grown adapters whose growth has ended go to the pool.
    for (auto it = dev.descriptor_pending.begin(); it != dev.descriptor_pending.end();) {
      const auto& [block, index] = dev.expert_slot.at(*it);
      std::optional<nn::ParameterSet> descriptor = dev.learner->ExpertDescriptor(block, index);
      if (!descriptor.has_value()) {
        ++it;
        continue;
      }
      FEDCL_RETURN_IF_ERROR(
          coordinator->AttachDescriptor(static_cast<fl::ClientId>(d), *it, *descriptor).status());
      result.bytes_up += descriptor->num_values() * int64_t{sizeof(float)};
      it = dev.descriptor_pending.erase(it);
    }
    fl::UpdateSubmission update;
    update.client = static_cast<fl::ClientId>(d);
    update.round = round;
    update.num_samples = dev.samples;
    update.local_steps = dev.steps;
    update.loss = dev.steps > 0 ? dev.loss_sum / static_cast<double>(dev.steps) : 0.0;
    std::vector<Eigen::VectorXf> deltas;
    deltas.reserve(dev.held.size());
    for (const auto& [name, version] : dev.held) {
      nn::ParameterSet* local = LocalSet(dev, name);
      if (local == nullptr) continue;
      Eigen::VectorXf delta = local->flat_values() - dev.base[name];
      if (delta.isZero(0.0f)) continue;  // frozen or untouched: nothing to send
      fl::ModuleDelta m;
      m.name = name;
      m.base_version = version;
      for (const nn::TensorInfo& t : local->tensors()) m.layout.push_back({t.name, t.shape});
      deltas.push_back(std::move(delta));
      m.values = absl::MakeSpan(deltas.back().data(), deltas.back().size());
      result.bytes_up += deltas.back().size() * int64_t{sizeof(float)};
      update.modules.push_back(std::move(m));
    }
    dev.loss_sum = 0;
    dev.steps = dev.samples = 0;
    if (update.modules.empty()) return absl::OkStatus();
    return coordinator->Submit(update).status();
  };

  auto evaluate = [&](int after_task) -> absl::Status {
    const int eval_devices = std::min(num_devices, c.eval_devices());
    std::vector<std::vector<double>> acc(eval_devices, std::vector<double>(num_tasks, 0.0));
    std::vector<std::vector<double>> online(eval_devices, std::vector<double>(num_tasks, 0.0));
    std::vector<absl::Status> errors(eval_devices);
    if (coordinator != nullptr) {
      for (int d = 0; d < eval_devices; ++d) {  // the model as the device's next sync gives it
        int64_t ignored = 0;
        FEDCL_RETURN_IF_ERROR(sync_down(d, &ignored).status());
      }
    }
    auto accuracy = [&](cl::Learner& learner, const data::Dataset& test) -> absl::StatusOr<double> {
      FEDCL_ASSIGN_OR_RETURN(std::vector<cl::Prediction> p, learner.Predict(test.images));
      int64_t correct = 0;
      for (size_t i = 0; i < p.size(); ++i) correct += p[i].label == test.labels[i];
      return static_cast<double>(correct) / static_cast<double>(p.size());
    };
    arena.execute([&] {
      tbb::parallel_for(0, eval_devices, [&](int d) {
        cl::Learner& learner = *devices[d].learner;
        for (int j = 0; j < num_tasks && errors[d].ok(); ++j) {
          absl::StatusOr<double> a = accuracy(learner, tasks[j].test);
          if (!a.ok()) errors[d] = a.status();
          acc[d][j] = a.value_or(0.0);
          if (method != cl::ClMethod::kLae) continue;
          learner.set_lae_inference(cl::Learner::LaeInference::kOnline);
          absl::StatusOr<double> o = accuracy(learner, tasks[j].test);
          learner.set_lae_inference(cl::Learner::LaeInference::kEnsemble);
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
    if (method == cl::ClMethod::kLae) result.online_accuracy.push_back(online_row);
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
      std::vector<uint32_t> ready;
      for (uint32_t d : participants) {
        FEDCL_ASSIGN_OR_RETURN(bool has_work, sync_down(static_cast<int>(d), &round));
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
      for (uint32_t d : participants) FEDCL_RETURN_IF_ERROR(sync_up(static_cast<int>(d), round));
      FEDCL_ASSIGN_OR_RETURN(fl::Coordinator::ReportResult reported,
                             coordinator->Report(0, 1, coordinator->current_round()));
      FEDCL_RETURN_IF_ERROR(reported.close_status);
      const fl::CoordinatorStatus status = coordinator->Status();
      PoolPoint point{.round = r + 1,
                      .modules = static_cast<int64_t>(status.pool.size()),
                      .merges = status.pool_merges};
      for (Device& dev : devices) {
        for (int a : dev.learner->AdaptersPerBlock()) point.adapters_per_device += a;
      }
      point.adapters_per_device /= num_devices;
      result.pool.push_back(point);
    }
    if ((r + 1) % rounds_per_task == 0)
      FEDCL_RETURN_IF_ERROR(evaluate(static_cast<int>((r + 1) / rounds_per_task) - 1));
  }

  std::vector<double> sizes;
  for (const ClTask& t : tasks) sizes.push_back(static_cast<double>(t.test.size()));
  FEDCL_ASSIGN_OR_RETURN(result.metrics, cl::ComputeContinualMetrics(result.accuracy, sizes));
  if (method == cl::ClMethod::kLae) {
    FEDCL_ASSIGN_OR_RETURN(result.online_metrics,
                           cl::ComputeContinualMetrics(result.online_accuracy, sizes));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace fedcl::sim
