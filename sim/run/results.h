// What the simulator's runs produce, for the report (sim/report/) to write: the results of a
// federated run (Engine, or a multi-process run read back from the server's log) and of a
// continual run (RunContinual, or the devices' reports of a run with real processes). Plain
// values: the engines fill them, nothing here computes.
#ifndef FEDCL_SIM_RUN_RESULTS_H_
#define FEDCL_SIM_RUN_RESULTS_H_

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/cl/cl_metrics.h"

namespace fedcl::sim {

// One evaluation of the global model in a federated run.
struct EvalPoint {
  int64_t round = 0;             // rounds completed
  double accuracy = 0.0;         // test accuracy of the global model
  double loss = 0.0;             // test loss
  double train_loss = 0.0;       // mean local training loss of this round's participants
  int64_t participants = 0;      // updates counted in the last round
  int64_t updates = 0;           // cumulative, updates counted
  int64_t bytes_up = 0;          // cumulative, updates sent
  int64_t bytes_down = 0;        // cumulative, modules sent to participants
  double weight_error = -1.0;    // FedAU: mean |ω_n − 1/p_n|·p_n over the first 10,000
                                 // clients; -1 if not FedAU
  double wall_seconds = 0.0;     // since the run started
  double virtual_seconds = 0.0;  // virtual clock
  // FedAWE (a rule whose clients train from bases of their own): the test accuracy of the mean
  // of all clients' local copies, the score FedAWE's reference code reports; -1 for other rules.
  double local_mean_accuracy = -1.0;
};

// One federated run: one method under one pattern with one seed.
struct RunResult {
  std::string method;
  std::string pattern;
  uint64_t seed = 0;
  std::vector<EvalPoint> evals;
  double wall_seconds = 0.0;
  double setup_seconds = 0.0;  // before round 0: partition, p_n, enrolment
  int64_t updates = 0;         // counted client updates
  int64_t stragglers = 0;      // missed the deadline
  int64_t dropouts = 0;        // left mid-round
  // Participants whose local training diverged or moved nothing (round_runner.h).
  int64_t failed_trainings = 0;
  // An asynchronous run that stopped early: no buffer closed for 10,000 ticks while updates
  // were refused (async_engine.cc).
  bool stalled = false;
  int64_t aggregator_bytes = 0;
  int64_t rss_bytes = 0;  // resident set at the end, with every client still held
  // Asynchronous runs: accepted updates by staleness (index: versions late), and updates refused
  // as too late (beyond max_staleness; their devices start again from the current version).
  std::vector<int64_t> staleness_histogram;
  int64_t refused_stale = 0;
  // FedAU runs: (1/p_n, ω_n) at the end for the first clients (up to 2,000), for the report.
  std::vector<std::pair<double, double>> inverse_probability_vs_weight;
};

// Which of the first `clients` clients took part in each round (one bit each), for the report's
// heat-map.
struct ParticipationMap {
  int clients = 0;
  int64_t rounds = 0;
  std::vector<uint8_t> participated;  // clients × rounds, row-major, 0 or 1
};

// Told of a federated run's progress as it happens (progress lines, metrics.jsonl). Called from
// the thread that runs the engine.
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void OnRound(int64_t round, int64_t participants) {}
  virtual void OnEval(const EvalPoint& point) {}
};

// One OOD detector scored against one shift after the first task of a continual run.
struct OodResult {
  std::string detector, shift;  // shift: a domain's name, or "unseen classes"
  double auroc = 0, fpr95 = 0;
  // The detector's scores as a stream, decided by a CUSUM test (core/ood/shift_tests.h)
  // calibrated on held-out clean scores to 1 false alarm per 10,000 clean samples: delays in
  // samples from the shift to the alarm over shuffled shifted streams (median, 90th percentile;
  // -1 when a stream ran out first), and the alarms per 10,000 samples of shuffled clean
  // streams.
  double cusum_delay_median = -1, cusum_delay_p90 = -1, cusum_false_alarms_per_10k = 0;
};

// The server's pool after one round of a continual run.
struct PoolPoint {
  int64_t round = 0;
  int64_t modules = 0;  // expert modules in the server's pool
  int64_t merges = 0;
  double adapters_per_device = 0;  // mean over devices of the adapters they run (SEMA)
};

// The q-quantile (nearest rank below) of ascending `delays` in which a shift never found counts as
// +∞, or -1 when that quantile is one never found (or there are no delays).
inline double DelayQuantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return -1.0;
  const double d = sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
  return std::isfinite(d) ? d : -1.0;
}

// How a growing method's devices detected one task's shift: for each device that entered the
// task, the samples it learned in the task up to and including the batch on which it grew (the
// detection delay), or none if it did not grow in the task.
struct ExpansionDetection {
  std::string task;
  int devices = 0;              // devices that entered the task
  std::vector<int64_t> delays;  // one per device that grew in it
};

// One continual run: one method on one seed.
struct ClRunResult {
  std::string method;
  uint64_t seed = 0;
  std::vector<std::string> task_names;
  std::vector<std::vector<double>> accuracy;  // [after task i][on task j], every j
  cl::ContinualMetrics metrics;
  // LAE: the same matrix and metrics for the online module alone.
  std::vector<std::vector<double>> online_accuracy;
  std::optional<cl::ContinualMetrics> online_metrics;
  std::vector<OodResult> ood;
  std::vector<PoolPoint> pool;
  int64_t proposals = 0, growth_refusals = 0;
  // Growing methods: detection per shifted task (tasks 1..T−1), and the growths that were not a
  // first detection of a task's shift (in task 0, or again in a task after its first), over the
  // samples learned while no shift was pending (task 0, and a task's samples after its first
  // growth): false alarms per 10,000 clean samples = 10,000 · false / clean.
  std::vector<ExpansionDetection> expansion;
  int64_t expansion_false_alarms = 0, expansion_clean_samples = 0;
  int64_t bytes_up = 0, bytes_down = 0;
  double seconds = 0;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_RESULTS_H_
