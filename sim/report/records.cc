#include "sim/report/records.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "proto/json.h"

namespace fedcl::sim {
namespace {

google::protobuf::ListValue Matrix(const std::vector<std::vector<double>>& rows) {
  google::protobuf::ListValue out;
  for (const std::vector<double>& row : rows)
    *out.add_values()->mutable_list_value() = proto::JsonArray(row);
  return out;
}

v1::ClMetricsRecord MetricsRecord(const cl::ContinualMetrics& m) {
  v1::ClMetricsRecord out;
  out.set_average_incremental(m.average_incremental);
  out.set_last(m.last);
  out.set_forgetting(m.forgetting);
  out.set_backward_transfer(m.backward_transfer);
  out.mutable_incremental()->Assign(m.incremental.begin(), m.incremental.end());
  return out;
}

}  // namespace

google::protobuf::ListValue PoolSeries(const std::vector<PoolPoint>& pool) {
  google::protobuf::ListValue out;
  for (const PoolPoint& p : pool) {
    *out.add_values()->mutable_list_value() =
        proto::JsonArray({static_cast<double>(p.round), static_cast<double>(p.modules),
                          static_cast<double>(p.merges), p.adapters_per_device});
  }
  return out;
}

v1::ClRunSummary ClRunRecord(const ClRunResult& r, bool pool) {
  v1::ClRunSummary out;
  out.set_method(r.method);
  out.set_seed(static_cast<double>(r.seed));
  out.mutable_tasks()->Assign(r.task_names.begin(), r.task_names.end());
  *out.mutable_accuracy() = Matrix(r.accuracy);
  *out.mutable_metrics() = MetricsRecord(r.metrics);
  if (r.online_metrics.has_value()) {
    *out.mutable_online_accuracy() = Matrix(r.online_accuracy);
    *out.mutable_online_metrics() = MetricsRecord(*r.online_metrics);
  }
  for (const OodResult& o : r.ood) {
    v1::OodRecord* record = out.add_ood();
    record->set_detector(o.detector);
    record->set_shift(o.shift);
    record->set_auroc(o.auroc);
    record->set_fpr95(o.fpr95);
    record->set_cusum_delay_median(o.cusum_delay_median);
    record->set_cusum_delay_p90(o.cusum_delay_p90);
    record->set_cusum_false_alarms_per_10k(o.cusum_false_alarms_per_10k);
  }
  out.set_pool_modules(static_cast<int32_t>(r.pool.empty() ? 0 : r.pool.back().modules));
  out.set_pool_merges(static_cast<double>(r.pool.empty() ? 0 : r.pool.back().merges));
  out.set_proposals(static_cast<double>(r.proposals));
  out.set_growth_refusals(static_cast<double>(r.growth_refusals));
  out.set_bytes_up(static_cast<double>(r.bytes_up));
  out.set_bytes_down(static_cast<double>(r.bytes_down));
  out.set_seconds(r.seconds);
  if (pool) *out.mutable_pool() = PoolSeries(r.pool);
  for (const ExpansionDetection& e : r.expansion) {
    v1::ClRunSummary::Expansion* record = out.add_expansion();
    record->set_task(e.task);
    record->set_devices(e.devices);
    record->set_detected(static_cast<int32_t>(e.delays.size()));
    std::vector<double> delays(e.delays.begin(), e.delays.end());
    delays.resize(e.devices, std::numeric_limits<double>::infinity());  // the devices that missed
    std::sort(delays.begin(), delays.end());
    record->set_delay_median(DelayQuantile(delays, 0.5));
    record->set_delay_p90(DelayQuantile(delays, 0.9));
  }
  if (!r.expansion.empty()) {
    out.set_expansion_false_alarms_per_10k(
        r.expansion_clean_samples > 0
            ? 1e4 * static_cast<double>(r.expansion_false_alarms) / r.expansion_clean_samples
            : 0.0);
  }
  return out;
}

}  // namespace fedcl::sim
