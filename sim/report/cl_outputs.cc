#include "sim/report/cl_outputs.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "sim/report/outputs.h"

namespace fedcl::sim {
namespace {

std::string Row(const std::vector<double>& values) {
  std::vector<std::string> parts;
  for (double v : values) parts.push_back(Number(v));
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

std::string Matrix(const std::vector<std::vector<double>>& rows) {
  std::vector<std::string> parts;
  for (const auto& r : rows) parts.push_back(Row(r));
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

std::string MetricsJson(const cl::ContinualMetrics& m) {
  return absl::StrCat("{\"average_incremental\":", Number(m.average_incremental),
                      ",\"last\":", Number(m.last), ",\"forgetting\":", Number(m.forgetting),
                      ",\"backward_transfer\":", Number(m.backward_transfer),
                      ",\"incremental\":", Row(m.incremental), "}");
}

std::string OodJson(const std::vector<OodResult>& ood) {
  std::vector<std::string> parts;
  for (const OodResult& o : ood) {
    parts.push_back(absl::StrCat("{\"detector\":", Quote(o.detector), ",\"shift\":", Quote(o.shift),
                                 ",\"auroc\":", Number(o.auroc), ",\"fpr95\":", Number(o.fpr95),
                                 "}"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

std::string PoolJson(const std::vector<PoolPoint>& pool) {
  std::vector<std::string> parts;
  for (const PoolPoint& p : pool) {
    parts.push_back(absl::StrCat("[", p.round, ",", p.modules, ",", p.merges, ",",
                                 Number(p.adapters_per_device), "]"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

// One run's summary; with `pool`, also its pool series (for the report's charts).
std::string RunJson(const ClRunResult& r, bool pool = false) {
  std::string json = absl::StrCat(
      "{\"method\":", Quote(r.method), ",\"seed\":", r.seed, ",\"tasks\":[",
      absl::StrJoin(r.task_names, ",",
                    [](std::string* out, const std::string& t) { out->append(Quote(t)); }),
      "],\"accuracy\":", Matrix(r.accuracy), ",\"metrics\":", MetricsJson(r.metrics));
  if (r.online_metrics.has_value()) {
    absl::StrAppend(&json, ",\"online_accuracy\":", Matrix(r.online_accuracy),
                    ",\"online_metrics\":", MetricsJson(*r.online_metrics));
  }
  const int64_t modules = r.pool.empty() ? 0 : r.pool.back().modules;
  const int64_t merges = r.pool.empty() ? 0 : r.pool.back().merges;
  absl::StrAppend(&json, ",\"ood\":", OodJson(r.ood), ",\"pool_modules\":", modules,
                  ",\"pool_merges\":", merges, ",\"proposals\":", r.proposals,
                  ",\"growth_refusals\":", r.growth_refusals, ",\"bytes_up\":", r.bytes_up,
                  ",\"bytes_down\":", r.bytes_down, ",\"seconds\":", Number(r.seconds));
  if (pool) absl::StrAppend(&json, ",\"pool\":", PoolJson(r.pool));
  return json + "}";
}

constexpr absl::string_view kClCharts = R"JS(
  data.runs.forEach(function (run) {
    if (run.seed !== data.runs[0].seed) return;
    var cells = [];
    run.accuracy.forEach(function (row, i) {
      row.forEach(function (a, j) { cells.push([j, i, Math.round(a * 1000) / 1000]); });
    });
    chart('Accuracy matrix — ' + run.method + ' (row: after task, column: task tested)', {
      tooltip: { position: 'top' },
      grid: { top: 40, left: 120, right: 24, bottom: 80 },
      xAxis: { type: 'category', data: run.tasks, name: 'tested on', nameLocation: 'middle', nameGap: 28 },
      yAxis: { type: 'category', data: run.tasks, inverse: true, name: 'after' },
      visualMap: { min: 0, max: 1, calculable: false, orient: 'horizontal', left: 'center', bottom: 4,
                   itemHeight: 120, inRange: { color: ['#fff5eb', '#7f2704'] } },
      series: [{ type: 'heatmap', data: cells, label: { show: true }, progressive: 0 }]
    });
  });
  var grown = data.runs.filter(function (r) { return r.pool && r.pool.length && r.pool[r.pool.length - 1][1] > 0; });
  if (grown.length) {
    var series = [];
    grown.forEach(function (r) {
      series.push({ name: r.method + ' seed ' + r.seed + ': pool modules', type: 'line', step: 'end', showSymbol: false,
                    data: r.pool.map(function (p) { return [p[0], p[1]]; }) });
      series.push({ name: r.method + ' seed ' + r.seed + ': adapters per device', type: 'line', showSymbol: false,
                    lineStyle: { type: 'dashed' }, data: r.pool.map(function (p) { return [p[0], p[3]]; }) });
    });
    chart('Pool growth: expert modules on the server and adapters each device runs', {
      tooltip: { trigger: 'axis' },
      legend: { top: 24, type: 'scroll' },
      grid: { top: 64, left: 56, right: 24, bottom: 48 },
      xAxis: { type: 'value', name: 'round', nameLocation: 'middle', nameGap: 28 },
      yAxis: { type: 'value', name: 'modules' },
      series: series
    });
  }
)JS";

}  // namespace

std::string ClMetricsLines(const ClRunResult& run) {
  std::string out;
  for (size_t t = 0; t < run.accuracy.size(); ++t) {
    absl::StrAppend(&out, "{\"method\":", Quote(run.method), ",\"seed\":", run.seed,
                    ",\"after_task\":", t, ",\"task\":", Quote(run.task_names[t]),
                    ",\"accuracy\":", Row(run.accuracy[t]), "}\n");
  }
  absl::StrAppend(&out, "{\"method\":", Quote(run.method), ",\"seed\":", run.seed,
                  ",\"pool\":", PoolJson(run.pool), "}\n");
  return out;
}

std::string ClSummaryJson(const Scenario& scenario, const std::vector<ClRunResult>& runs,
                          double wall_seconds) {
  std::vector<std::string> parts;
  for (const ClRunResult& r : runs) parts.push_back(RunJson(r));
  return absl::StrCat("{\"scenario\":", Quote(scenario.config.name()),
                      ",\"kind\":", Quote(scenario.config.continual().kind()),
                      ",\"devices\":", scenario.num_clients(),
                      ",\"wall_seconds\":", Number(wall_seconds), ",\"runs\":[",
                      absl::StrJoin(parts, ",\n"), "]}\n");
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
  }
  if (!runs.empty() && !runs[0].ood.empty()) {
    absl::StrAppend(&out, "\nOOD after task 0 (", runs[0].method, ", seed ", runs[0].seed,
                    "): detector / shift: AUROC, FPR@95\n");
    for (const OodResult& o : runs[0].ood) {
      absl::StrAppendFormat(&out, "  %-12s %-16s %.4f  %.4f\n", o.detector, o.shift, o.auroc,
                            o.fpr95);
    }
  }
  return out;
}

std::string ClReportHtml(const Scenario& scenario, const std::vector<ClRunResult>& runs,
                         absl::string_view chart_library) {
  // The charts' data: the summary of each run plus its pool series.
  std::vector<std::string> with_pool;
  for (const ClRunResult& r : runs) with_pool.push_back(RunJson(r, /*pool=*/true));
  const std::string data = absl::StrCat("{\"runs\":[", absl::StrJoin(with_pool, ","), "]}");

  std::string table =
      "<table><tr><th>method</th><th>seed</th><th>Ā</th><th>A_T</th><th>forgetting</th>"
      "<th>BWT</th><th>pool modules</th><th>merges</th><th>MiB up / down</th><th>time</th></tr>";
  for (const ClRunResult& r : runs) {
    absl::StrAppendFormat(
        &table,
        "<tr><td>%s</td><td>%d</td><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%.4f</td>"
        "<td>%d</td><td>%d</td><td>%.2f / %.2f</td><td>%.0f s</td></tr>",
        HtmlEscape(r.method), r.seed, r.metrics.average_incremental, r.metrics.last,
        r.metrics.forgetting, r.metrics.backward_transfer,
        r.pool.empty() ? 0 : r.pool.back().modules, r.pool.empty() ? 0 : r.pool.back().merges,
        r.bytes_up / 1048576.0, r.bytes_down / 1048576.0, r.seconds);
    if (r.online_metrics.has_value()) {
      absl::StrAppendFormat(&table,
                            "<tr><td>%s (online module only)</td><td>%d</td><td>%.4f</td>"
                            "<td>%.4f</td><td>%.4f</td><td>%.4f</td><td colspan=4></td></tr>",
                            HtmlEscape(r.method), r.seed, r.online_metrics->average_incremental,
                            r.online_metrics->last, r.online_metrics->forgetting,
                            r.online_metrics->backward_transfer);
    }
  }
  table += "</table>";
  std::string ood =
      "<h2>OOD detection after the first task</h2><table><tr><th>method</th>"
      "<th>seed</th><th>detector</th><th>shift</th><th>AUROC</th><th>FPR@95</th></tr>";
  for (const ClRunResult& r : runs) {
    for (const OodResult& o : r.ood) {
      absl::StrAppendFormat(&ood,
                            "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%.4f</td>"
                            "<td>%.4f</td></tr>",
                            HtmlEscape(r.method), r.seed, HtmlEscape(o.detector),
                            HtmlEscape(o.shift), o.auroc, o.fpr95);
    }
  }
  ood += "</table>";
  const v1::ContinualConfig& c = scenario.config.continual();
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>fedcl-sim: ",
      HtmlEscape(scenario.config.name()),
      "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
      ".chart{width:100%;max-width:900px;height:460px;margin:16px 0}"
      "table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;"
      "padding:4px 8px;text-align:left}</style>\n</head><body>\n<h1>fedcl-sim: ",
      HtmlEscape(scenario.config.name()), "</h1>\n<p>Continual learning (", HtmlEscape(c.kind()),
      "): ", scenario.num_clients(), " devices, ", c.rounds_per_task(),
      " rounds per task. Ā: mean over tasks of the accuracy on every task seen so far; "
      "forgetting and BWT as algorithms.md §9.3.</p>\n",
      table, ood,
      "\n<div id=\"charts\"></div>\n<script type=\"application/json\" id=\"report-data\">", data,
      "</script>\n<script>", chart_library, "</script>\n<script>(function () {", kChartHarness,
      kClCharts, kChartHarnessEnd, "</script>\n</body></html>\n");
}

}  // namespace fedcl::sim
