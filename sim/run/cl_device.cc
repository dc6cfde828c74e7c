#include "sim/run/cl_device.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "fedcl/client.h"
#include "google/protobuf/text_format.h"

namespace fedcl::sim {
namespace {

constexpr absl::Duration kPoll = absl::Milliseconds(100);

// Dataset rows are standardised model inputs; the SDK takes pixels in [0, 1] and standardises
// them itself.
void ToPixels(const nn::Matrix& x, std::vector<float>* pixels) {
  pixels->resize(static_cast<size_t>(x.size()));
  Eigen::Map<nn::Matrix>(pixels->data(), x.rows(), x.cols()) =
      (x.array() * data::kFashionMnistStddev + data::kFashionMnistMean).matrix();
}

absl::StatusOr<double> Accuracy(Client& client, const data::Dataset& test) {
  std::vector<float> pixels;
  ToPixels(test.images, &pixels);
  std::vector<Prediction> predictions(test.size());
  FEDCL_RETURN_IF_ERROR(client.Predict(pixels, absl::MakeSpan(predictions)));
  int64_t correct = 0;
  for (int i = 0; i < test.size(); ++i) correct += predictions[i].label == test.labels[i];
  return static_cast<double>(correct) / std::max(1, test.size());
}

}  // namespace

absl::Status RunClDevice(const Scenario& scenario, const SimulationInputs& inputs,
                         const std::vector<ClTask>& tasks, const PatternSpec& pattern,
                         const ClDeviceOptions& options, base::FileSystem& fs) {
  const v1::ContinualConfig& c = scenario.config.continual();
  const int num_devices = scenario.num_clients();
  if (options.device < 0 || options.device >= num_devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("--device=", options.device, " is not in [0, ", num_devices, ")"));
  }
  const auto started = std::chrono::steady_clock::now();
  const int d = options.device;
  const int num_tasks = static_cast<int>(tasks.size());
  const int64_t rounds_per_task = c.rounds_per_task();
  const int64_t rounds = num_tasks * rounds_per_task;
  const bool evaluates = d < std::min(num_devices, c.eval_devices());

  ClientOptions o;
  o.server_address = options.server;
  o.tls_ca_file = options.tls_ca_file;
  o.tls_server_name = options.tls_server_name;
  o.token = options.token;
  o.client_id = static_cast<uint64_t>(d);
  o.storage_dir = options.storage_dir;
  o.method = options.method;
  // The scenario's learner section as the method's knobs, as the in-process run sets them.
  const cl::LearnerOptions scenario_learner = LearnerOptionsFor(c, options.method, options.seed);
  o.learning_rate = scenario_learner.learning_rate;
  o.method_options = scenario_learner.method_options;
  o.num_classes = inputs.train.num_classes;
  o.memory_budget_bytes = int64_t{256} << 20;  // room for predicting a task's test set at once
  o.autosave_batches = std::max(1, c.steps_per_round());
  o.seed = options.seed;
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Create(o));

  // The in-process run's draws for this device (sim/world/cl_tasks.h).
  const int delay = DeviceDelay(c, options.seed, d);
  const std::vector<float> probabilities(
      num_devices, static_cast<float>(scenario.config.participation().p_mean()));
  FEDCL_ASSIGN_OR_RETURN(auto participation, ParticipationProcess::Create(pattern, probabilities,
                                                                          options.seed, nullptr));

  v1::ClDeviceReport report;
  report.set_device(d);
  report.set_method(options.method);
  report.set_seed(options.seed);
  for (const ClTask& t : tasks) report.add_task_names(t.name);

  std::fprintf(stderr, "device %d ready: %d tasks, enters task 1 at round %lld\n", d, num_tasks,
               static_cast<long long>(rounds_per_task + delay));
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoSeconds(options.max_time);
  int64_t advanced = -1;       // participation drawn up to this round
  int64_t learned_round = -1;  // the last round this device learned in
  int current_task = -1;
  int evaluated = 0;  // matrix rows written
  nn::Matrix x;
  std::vector<int32_t> y;
  std::vector<float> pixels;
  std::vector<int> indices(c.batch_size());
  while (true) {
    if (std::chrono::steady_clock::now() > deadline)
      return absl::DeadlineExceededError(absl::StrCat("device ", d, " ran out of time"));
    absl::StatusOr<SyncResult> synced = client->Sync();
    if (!synced.ok() && !absl::IsUnavailable(synced.status()) &&
        !absl::IsDeadlineExceeded(synced.status()) && !absl::IsResourceExhausted(synced.status())) {
      return synced.status();
    }
    const int64_t round = synced.ok() ? synced->round : -1;
    if (synced.ok()) {
      report.set_bytes_up(report.bytes_up() + synced->bytes_uploaded);
      report.set_bytes_down(report.bytes_down() + synced->bytes_downloaded);
    }
    // Rows for every task whose last round the server has closed (the sync just brought the
    // modules it produced).
    while (evaluates && evaluated < num_tasks && round >= (evaluated + 1) * rounds_per_task) {
      v1::ClDeviceReport::Row* row = report.add_rows();
      for (const ClTask& t : tasks) {
        FEDCL_ASSIGN_OR_RETURN(double a, Accuracy(*client, t.test));
        row->add_accuracy(a);
      }
      std::fprintf(stderr, "device %d after task %d (%s): %s\n", d, evaluated,
                   tasks[evaluated].name.c_str(), row->ShortDebugString().c_str());
      ++evaluated;
    }
    if (round >= rounds && (!evaluates || evaluated == num_tasks)) break;
    if (round < 0 || round >= rounds || round == learned_round) {
      std::this_thread::sleep_for(absl::ToChronoMilliseconds(kPoll));
      continue;
    }
    while (advanced < round) participation->Advance(++advanced);
    learned_round = round;
    const std::vector<uint32_t> in = participation->Participants(d, d + 1);
    if (in.empty()) continue;  // not this round
    const int task = TaskAtRound(c, num_tasks, delay, round);
    if (task != current_task) {  // as the in-process engine does at the device's task times
      current_task = task;
      FEDCL_RETURN_IF_ERROR(client->BeginTask(tasks[task].classes));
    }
    const data::Dataset& pool = tasks[task].train;
    for (int step = 0; step < c.steps_per_round(); ++step) {
      DrawBatchIndices(c, pool.size(), options.seed, d, round, step, indices);
      FEDCL_RETURN_IF_ERROR(data::GatherBatch(pool, indices, &x, &y));
      ToPixels(x, &pixels);
      FEDCL_RETURN_IF_ERROR(client->Learn(pixels, y).status());
    }
    absl::StatusOr<SyncResult> submitted = client->Sync();  // a closed round keeps it queued
    if (!submitted.ok() && !absl::IsUnavailable(submitted.status()) &&
        !absl::IsDeadlineExceeded(submitted.status()) &&
        !absl::IsResourceExhausted(submitted.status())) {
      return submitted.status();
    }
    if (submitted.ok()) {
      report.set_bytes_up(report.bytes_up() + submitted->bytes_uploaded);
      report.set_bytes_down(report.bytes_down() + submitted->bytes_downloaded);
    }
  }
  const ClientStats stats = client->Stats();
  report.set_adapters(stats.adapters);
  report.set_growth_refusals(stats.growth_refusals);
  report.set_submissions(stats.submissions);
  report.set_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  FEDCL_RETURN_IF_ERROR(client->Save());
  std::string text;
  google::protobuf::TextFormat::PrintToString(report, &text);
  return fs.WriteFileAtomically(options.report_path, text);
}

}  // namespace fedcl::sim
