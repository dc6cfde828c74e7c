#include "sim/report/summary.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "proto/json.h"
#include "sim/report/records.h"

namespace fedcl::sim {
namespace {

constexpr char kFinalAccuracyDefinition[] =
    "per seed, mean test accuracy over the last 10% of evaluations; then mean and sample std "
    "over seeds";

void Add(const RunResult& run, MethodSummary& s) {
  s.final_accuracy.push_back(FinalAccuracy(run.evals));
  if (!run.evals.empty() && run.evals.back().local_mean_accuracy >= 0) {
    // Summed here, divided by the seeds in Finish.
    s.local_mean_final = std::max(0.0, s.local_mean_final) +
                         FinalAccuracy(run.evals, &EvalPoint::local_mean_accuracy);
  }
  s.wall_seconds += run.wall_seconds;
  s.setup_seconds += run.setup_seconds;
  s.updates += run.updates;
  s.rss_bytes = std::max(s.rss_bytes, run.rss_bytes);
  s.aggregator_bytes = std::max(s.aggregator_bytes, run.aggregator_bytes);
  s.stragglers += run.stragglers;
  s.dropouts += run.dropouts;
  if (!run.evals.empty()) {
    s.virtual_seconds += run.evals.back().virtual_seconds;
    s.bytes_up += run.evals.back().bytes_up;
  }
  if (s.staleness_histogram.size() < run.staleness_histogram.size()) {
    s.staleness_histogram.resize(run.staleness_histogram.size(), 0);
  }
  for (size_t i = 0; i < run.staleness_histogram.size(); ++i) {
    s.staleness_histogram[i] += run.staleness_histogram[i];
  }
  s.refused_stale += run.refused_stale;
  s.failed_trainings += run.failed_trainings;
  s.stalled_runs += run.stalled ? 1 : 0;
}

// The first evaluation of `run` whose trailing mean reaches `target`, into s's time-to-accuracy
// sums. The trailing mean is over as many evaluations as FinalAccuracy averages (10% of the
// run's), so a run reaches its own final accuracy by its end at the latest, and one noisy
// evaluation does not count as arriving.
void AddTimeToTarget(const RunResult& run, double target, MethodSummary& s) {
  const size_t window = std::max<size_t>(1, (run.evals.size() + 9) / 10);
  double sum = 0.0;
  for (size_t i = 0; i < run.evals.size(); ++i) {
    sum += run.evals[i].accuracy;
    if (i >= window) sum -= run.evals[i - window].accuracy;
    const double mean = sum / static_cast<double>(std::min(i + 1, window));
    // FinalAccuracy sums the same values in the same order; the tolerance covers the running
    // sum's different rounding.
    if (mean < target - 1e-12) continue;
    ++s.reached_seeds;
    s.seconds_to_target += run.evals[i].virtual_seconds;
    s.updates_to_target += static_cast<double>(run.evals[i].updates);
    return;
  }
}

// Mean and sample standard deviation of the final accuracies.
void Finish(MethodSummary& s) {
  for (double a : s.final_accuracy) s.mean += a;
  s.mean /= static_cast<double>(s.final_accuracy.size());
  s.virtual_seconds /= static_cast<double>(s.final_accuracy.size());
  if (s.local_mean_final >= 0) s.local_mean_final /= static_cast<double>(s.final_accuracy.size());
  if (s.final_accuracy.size() < 2) return;
  double squares = 0.0;
  for (double a : s.final_accuracy) squares += (a - s.mean) * (a - s.mean);
  s.stddev = std::sqrt(squares / static_cast<double>(s.final_accuracy.size() - 1));
}

v1::SimMethodSummary MethodRecord(const MethodSummary& s) {
  v1::SimMethodSummary out;
  out.set_method(s.method);
  out.set_pattern(s.pattern);
  out.set_final_accuracy_mean(s.mean);
  out.set_final_accuracy_std(s.stddev);
  out.mutable_final_accuracy_per_seed()->Assign(s.final_accuracy.begin(), s.final_accuracy.end());
  out.set_seeds(static_cast<int32_t>(s.final_accuracy.size()));
  out.set_wall_seconds(s.wall_seconds);
  out.set_setup_seconds(s.setup_seconds);
  out.set_updates(static_cast<double>(s.updates));
  out.set_rss_bytes_at_end(static_cast<double>(s.rss_bytes));
  out.set_aggregator_bytes(static_cast<double>(s.aggregator_bytes));
  out.set_stragglers(static_cast<double>(s.stragglers));
  out.set_dropouts(static_cast<double>(s.dropouts));
  out.set_asynchronous(s.asynchronous);
  out.set_virtual_seconds(s.virtual_seconds);
  out.set_bytes_up(static_cast<double>(s.bytes_up));
  for (int64_t count : s.staleness_histogram) {
    out.add_staleness_histogram(static_cast<double>(count));
  }
  out.set_refused_stale(static_cast<double>(s.refused_stale));
  out.set_target_accuracy(s.target_accuracy);
  out.set_reached_seeds(s.reached_seeds);
  out.set_seconds_to_target(s.seconds_to_target);
  out.set_updates_to_target(s.updates_to_target);
  if (s.local_mean_final >= 0) out.set_local_mean_final_accuracy(s.local_mean_final);
  return out;
}

absl::StatusOr<std::string> Indented(const google::protobuf::Message& message) {
  absl::StatusOr<std::string> json = proto::PrintJson(message, proto::JsonLayout::kIndented);
  if (json.ok()) json->append("\n");
  return json;
}

}  // namespace

double FinalAccuracy(const std::vector<EvalPoint>& evals, double EvalPoint::*accuracy) {
  if (evals.empty()) return 0.0;
  const size_t count = std::max<size_t>(1, (evals.size() + 9) / 10);
  double sum = 0.0;
  for (size_t i = evals.size() - count; i < evals.size(); ++i) sum += evals[i].*accuracy;
  return sum / static_cast<double>(count);
}

std::vector<MethodSummary> Summarize(const Scenario& scenario, const std::vector<RunResult>& runs) {
  std::vector<MethodSummary> summaries;
  for (const MethodSpec& method : scenario.methods) {
    for (const PatternSpec& pattern : scenario.patterns) {
      MethodSummary s;
      s.method = method.label;
      s.pattern = pattern.name;
      for (const RunResult& run : runs) {
        if (run.method == s.method && run.pattern == s.pattern) Add(run, s);
      }
      if (s.final_accuracy.empty()) continue;
      s.asynchronous = method.asynchronous();
      Finish(s);
      summaries.push_back(std::move(s));
    }
  }
  // Time to accuracy, against the first synchronous method's final accuracy per pattern.
  for (MethodSummary& s : summaries) {
    for (const MethodSummary& reference : summaries) {
      if (reference.asynchronous || reference.pattern != s.pattern) continue;
      s.target_accuracy = reference.mean;
      break;
    }
    if (s.target_accuracy < 0) continue;
    for (const RunResult& run : runs) {
      if (run.method == s.method && run.pattern == s.pattern) {
        AddTimeToTarget(run, s.target_accuracy, s);
      }
    }
    if (s.reached_seeds > 0) {
      s.seconds_to_target /= s.reached_seeds;
      s.updates_to_target /= s.reached_seeds;
    }
  }
  return summaries;
}

absl::StatusOr<std::string> SummaryJson(const Scenario& scenario,
                                        const std::vector<MethodSummary>& summaries,
                                        double wall_seconds, int64_t peak_rss_bytes) {
  v1::SimSummary summary;
  summary.set_scenario(scenario.config.name());
  summary.set_clients(scenario.num_clients());
  summary.set_rounds(static_cast<int32_t>(scenario.rounds()));
  summary.set_wall_seconds(wall_seconds);
  summary.set_peak_rss_bytes(static_cast<double>(peak_rss_bytes));
  summary.set_final_accuracy_definition(kFinalAccuracyDefinition);
  for (const MethodSummary& s : summaries) *summary.add_methods() = MethodRecord(s);
  return Indented(summary);
}

absl::StatusOr<std::string> ClSummaryJson(const Scenario& scenario,
                                          const std::vector<ClRunResult>& runs,
                                          double wall_seconds) {
  v1::ClSummary summary;
  summary.set_scenario(scenario.config.name());
  summary.set_kind(scenario.config.continual().kind());
  summary.set_devices(scenario.num_clients());
  summary.set_wall_seconds(wall_seconds);
  for (const ClRunResult& r : runs) *summary.add_runs() = ClRunRecord(r);
  return Indented(summary);
}

std::string SummaryText(const std::vector<MethodSummary>& summaries) {
  std::string out;
  for (const MethodSummary& s : summaries) {
    absl::StrAppendFormat(&out, "%-28s %-14s final accuracy %.4f ± %.4f (%d seed(s))", s.method,
                          s.pattern, s.mean, s.stddev, static_cast<int>(s.final_accuracy.size()));
    if (s.local_mean_final >= 0) {
      absl::StrAppendFormat(&out, " [mean of local copies, FedAWE's reference score: %.4f]",
                            s.local_mean_final);
    }
    // Virtual time only where devices take time (a profile or a slowdown).
    if (s.virtual_seconds > 0) {
      absl::StrAppendFormat(&out, ", %.0f virtual s", s.virtual_seconds);
      if (s.reached_seeds > 0) {
        absl::StrAppendFormat(&out, "; reached %.4f at %.0f s, %.0f updates (%d seed(s))",
                              s.target_accuracy, s.seconds_to_target, s.updates_to_target,
                              s.reached_seeds);
      } else if (s.target_accuracy >= 0) {
        absl::StrAppendFormat(&out, "; never reached %.4f", s.target_accuracy);
      }
    }
    if (!s.staleness_histogram.empty()) {
      int64_t accepted = 0, late = 0;
      for (size_t i = 0; i < s.staleness_histogram.size(); ++i) {
        accepted += s.staleness_histogram[i];
        late += static_cast<int64_t>(i) * s.staleness_histogram[i];
      }
      absl::StrAppendFormat(&out, "; mean staleness %.2f, %d refused",
                            accepted > 0 ? static_cast<double>(late) / accepted : 0.0,
                            s.refused_stale);
    }
    if (s.failed_trainings > 0) {
      absl::StrAppendFormat(&out, "; %d trainings diverged or moved nothing", s.failed_trainings);
    }
    if (s.stalled_runs > 0) {
      absl::StrAppendFormat(&out, "; %d run(s) stalled, every update refused", s.stalled_runs);
    }
    out += "\n";
  }
  return out;
}

std::string Findings(const std::vector<MethodSummary>& summaries) {
  std::vector<std::string> patterns;
  for (const MethodSummary& s : summaries) {
    if (std::find(patterns.begin(), patterns.end(), s.pattern) == patterns.end()) {
      patterns.push_back(s.pattern);
    }
  }
  std::string out;
  for (const std::string& pattern : patterns) {
    std::vector<const MethodSummary*> synchronous, asynchronous;
    for (const MethodSummary& s : summaries) {
      if (s.pattern != pattern) continue;
      (s.asynchronous ? asynchronous : synchronous).push_back(&s);
    }
    if (synchronous.empty()) continue;
    const MethodSummary& subject = *synchronous.front();
    std::vector<const MethodSummary*> ranked = synchronous;
    std::stable_sort(
        ranked.begin(), ranked.end(),
        [](const MethodSummary* a, const MethodSummary* b) { return a->mean > b->mean; });
    const size_t rank = std::find(ranked.begin(), ranked.end(), &subject) - ranked.begin() + 1;
    absl::StrAppendFormat(&out, "%s: %s ranks %d of %d synchronous methods (%.4f)", pattern,
                          subject.method, rank, ranked.size(), subject.mean);
    const auto in_stds = [&](double gap) {
      return subject.stddev > 0 ? absl::StrFormat(", %.1f of its std", gap / subject.stddev)
                                : std::string();
    };
    if (rank == 1 && ranked.size() > 1) {
      const double gap = 100 * (subject.mean - ranked[1]->mean);
      absl::StrAppendFormat(&out, ", %.1f points ahead of %s%s", gap, ranked[1]->method,
                            in_stds(gap / 100));
    } else if (rank > 1) {
      const double gap = 100 * (ranked[0]->mean - subject.mean);
      absl::StrAppendFormat(&out, ", %.1f points behind %s (%.4f)%s", gap, ranked[0]->method,
                            ranked[0]->mean, in_stds(gap / 100));
    }
    for (const MethodSummary* a : asynchronous) {
      if (a->reached_seeds == 0) {
        absl::StrAppendFormat(&out, "; %s never reaches %.4f (it ends at %.4f)", a->method,
                              a->target_accuracy, a->mean);
      } else if (subject.reached_seeds > 0 && subject.seconds_to_target > 0) {
        absl::StrAppendFormat(
            &out,
            "; %s reaches %s's %.4f in %.2fx its virtual time (%.0f s in %d of %d seeds against "
            "%.0f s in %d of %d) and ends at %.4f",
            a->method, subject.method, a->target_accuracy,
            a->seconds_to_target / subject.seconds_to_target, a->seconds_to_target,
            a->reached_seeds, static_cast<int>(a->final_accuracy.size()), subject.seconds_to_target,
            subject.reached_seeds, static_cast<int>(subject.final_accuracy.size()), a->mean);
      }
    }
    out += ".\n";
  }
  return out;
}

std::string ClTextTable(const std::vector<ClRunResult>& runs) {
  std::string out = absl::StrFormat("%-20s %4s %7s %7s %7s %7s %6s %9s %9s %7s\n", "method", "seed",
                                    "Ā", "A_T", "F", "BWT", "pool", "up MiB", "down MiB", "time s");
  for (const ClRunResult& r : runs) {
    // "-": no pool series (no server, or a run with real processes, whose server reports it).
    absl::StrAppendFormat(&out, "%-20s %4d %7.4f %7.4f %7.4f %7.4f %6s %9.2f %9.2f %7.1f\n",
                          r.method, r.seed, r.metrics.average_incremental, r.metrics.last,
                          r.metrics.forgetting, r.metrics.backward_transfer,
                          r.pool.empty() ? "-" : absl::StrCat(r.pool.back().modules),
                          r.bytes_up / 1048576.0, r.bytes_down / 1048576.0, r.seconds);
    if (r.online_metrics.has_value()) {
      const cl::ContinualMetrics& m = *r.online_metrics;
      absl::StrAppendFormat(&out, "%-20s %4d %7.4f %7.4f %7.4f %7.4f\n", "  lae online only",
                            r.seed, m.average_incremental, m.last, m.forgetting,
                            m.backward_transfer);
    }
    if (r.expansion.empty()) continue;
    // Growth as shift detection: devices that grew / entered, delay median / p90 in samples.
    const v1::ClRunSummary record = ClRunRecord(r);
    absl::StrAppend(&out, "  grew on:");
    for (const v1::ClRunSummary::Expansion& e : record.expansion()) {
      absl::StrAppendFormat(&out, " %s %d/%d (%.0f/%.0f);", e.task(), e.detected(), e.devices(),
                            e.delay_median(), e.delay_p90());
    }
    absl::StrAppendFormat(&out, " false alarms %.1f per 10k clean\n",
                          record.expansion_false_alarms_per_10k());
  }
  if (!runs.empty() && !runs[0].ood.empty()) {
    absl::StrAppend(&out, "\nOOD after task 0 (", runs[0].method, ", seed ", runs[0].seed,
                    "): detector / shift: AUROC, FPR@95; CUSUM delay median / p90 in "
                    "samples, false alarms per 10k clean\n");
    for (const OodResult& o : runs[0].ood) {
      absl::StrAppendFormat(&out, "  %-12s %-16s %.4f  %.4f  %6.0f %6.0f  %.1f\n", o.detector,
                            o.shift, o.auroc, o.fpr95, o.cusum_delay_median, o.cusum_delay_p90,
                            o.cusum_false_alarms_per_10k);
    }
  }
  return out;
}

}  // namespace fedcl::sim
