// A continual run's results as the records fedcl-sim prints (proto/fedcl/v1/sim_report.proto):
// the pieces that summary.json, metrics.jsonl and report.html share.
#ifndef FEDCL_SIM_REPORT_RECORDS_H_
#define FEDCL_SIM_REPORT_RECORDS_H_

#include <vector>

#include "google/protobuf/struct.pb.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "sim/run/results.h"

namespace fedcl::sim {

// The pool's growth as [round, modules, merges, adapters per device] per round.
google::protobuf::ListValue PoolSeries(const std::vector<PoolPoint>& pool);

// One run's summary: tasks, accuracy matrix and metrics (LAE: its online module's too), OOD
// results, the pool at the end, proposals, bytes, time; with `pool`, also the pool series that
// report.html charts.
v1::ClRunSummary ClRunRecord(const ClRunResult& run, bool pool = false);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_RECORDS_H_
