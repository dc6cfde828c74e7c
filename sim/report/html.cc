#include "sim/report/html.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "core/base/status_macros.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "proto/json.h"
#include "sim/report/records.h"

namespace fedcl::sim {
namespace {

// What every page's script starts with: error tracking for the headless-browser test
// (data-errors, data-charts-rendered, data-charts-expected on <body>) and chart(title, option).
// The page's charts follow, then kChartHarnessEnd.
constexpr absl::string_view kChartHarness = R"JS(
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message)); mark(); });
  var consoleError = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, ' ')); mark(); consoleError.apply(console, arguments); };
  function mark() { document.body.setAttribute('data-errors', String(errors.length)); }
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var charts = [];
  var rendered = 0;
  function chart(title, option) {
    var box = document.createElement('div');
    box.className = 'chart';
    document.getElementById('charts').appendChild(box);
    var c = echarts.init(box, null, { renderer: 'canvas' });
    c.on('finished', function () {
      if (box.getAttribute('data-rendered') !== '1') {
        box.setAttribute('data-rendered', '1');
        rendered += 1;
        document.body.setAttribute('data-charts-rendered', String(rendered));
      }
    });
    option.title = { text: title, left: 'center', textStyle: { fontSize: 14 } };
    option.animation = false;
    c.setOption(option);
    charts.push(c);
  }
)JS";

constexpr absl::string_view kChartHarnessEnd = R"JS(
  document.body.setAttribute('data-charts-expected', String(charts.length));
  mark();
  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
})();
)JS";

// The federated page's charts, drawn from SimReportData.
constexpr absl::string_view kFederatedCharts = R"JS(
  if (data.tuning && data.tuning.methods) {
    // Sensitivity: for each η, the method's best validation accuracy over its γ grid.
    chart('Tuning: validation accuracy against the local learning rate η (best γ for each η)', {
      tooltip: { trigger: 'item' },
      legend: { top: 24, type: 'scroll' },
      grid: { top: 64, left: 56, right: 24, bottom: 48 },
      xAxis: { type: 'log', name: 'η', nameLocation: 'middle', nameGap: 28 },
      yAxis: { type: 'value', name: 'validation accuracy', scale: true },
      series: data.tuning.methods.map(function (m) {
        var best = {};
        (m.grid || []).forEach(function (p) {
          var a = p.validation_accuracy || 0;
          if (!(p.learning_rate in best) || a > best[p.learning_rate]) best[p.learning_rate] = a;
        });
        var points = Object.keys(best).map(Number).sort(function (a, b) { return a - b; })
            .map(function (eta) { return [eta, best[eta]]; });
        return { name: m.method, type: 'line', data: points };
      })
    });
  }
  data.patterns.forEach(function (pattern) {
    chart('Test accuracy — ' + pattern.name + ' (mean over seeds)', {
      tooltip: { trigger: 'axis' },
      legend: { top: 24, type: 'scroll' },
      grid: { top: 64, left: 56, right: 24, bottom: 48 },
      xAxis: { type: 'value', name: 'round', nameLocation: 'middle', nameGap: 28 },
      yAxis: { type: 'value', name: 'accuracy', scale: true },
      series: pattern.methods.map(function (m) {
        return { name: m.label, type: 'line', showSymbol: false, data: m.accuracy };
      })
    });
  });
  data.patterns.forEach(function (pattern) {
    if (!pattern.heatmap) return;
    var h = pattern.heatmap;
    chart('Participation — ' + pattern.name + ' (first ' + h.clients + ' clients, ' + h.bin_rounds + ' round(s) per column)', {
      tooltip: { position: 'top' },
      grid: { top: 40, left: 56, right: 24, bottom: 72 },
      xAxis: { type: 'category', name: 'round / ' + h.bin_rounds, nameLocation: 'middle', nameGap: 28,
               data: Array.from({ length: h.bins }, function (_, i) { return i * h.bin_rounds; }) },
      yAxis: { type: 'category', name: 'client', data: Array.from({ length: h.clients }, function (_, i) { return i; }) },
      visualMap: { min: 0, max: 1, calculable: false, orient: 'horizontal', left: 'center', bottom: 4,
                   itemHeight: 120, inRange: { color: ['#f7fbff', '#08306b'] } },
      series: [{ type: 'heatmap', data: h.cells, progressive: 0 }]
    });
  });
  var scatter = data.patterns.filter(function (p) { return p.weights && p.weights.length; });
  if (scatter.length) {
    var top = 1;
    scatter.forEach(function (p) { p.weights.forEach(function (w) { top = Math.max(top, w[0], w[1]); }); });
    var series = scatter.map(function (p) {
      return { name: p.name + ' (' + p.weights_method + ')', type: 'scatter', symbolSize: 5, data: p.weights };
    });
    series.push({ name: 'ω = 1/p', type: 'line', showSymbol: false, data: [[1, 1], [top, top]],
                  lineStyle: { type: 'dashed', color: '#888' } });
    chart('FedAU: estimated weight ω_n against the true 1/p_n (end of run, first seed)', {
      tooltip: { trigger: 'item' },
      legend: { top: 24, type: 'scroll' },
      grid: { top: 64, left: 56, right: 24, bottom: 48 },
      xAxis: { type: 'value', name: '1/p_n', nameLocation: 'middle', nameGap: 28 },
      yAxis: { type: 'value', name: 'ω_n' },
      series: series
    });
  }
)JS";

// The continual page's charts, drawn from ClReportData.
constexpr absl::string_view kContinualCharts = R"JS(
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

constexpr absl::string_view kFederatedStyle =
    "body{font-family:sans-serif;margin:24px;color:#222}"
    ".chart{width:100%;max-width:1100px;height:420px;margin:16px 0}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left}";
constexpr absl::string_view kContinualStyle =
    "body{font-family:sans-serif;margin:24px;color:#222}"
    ".chart{width:100%;max-width:900px;height:460px;margin:16px 0}"
    "table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ccc;"
    "padding:4px 8px;text-align:left}";

// What a page holds besides the shared frame.
struct Page {
  std::string title;  // the scenario's name
  absl::string_view style;
  std::string body;  // HTML between the heading and the charts
  std::string data;  // JSON the charts draw from
  absl::string_view charts;
};

std::string PageHtml(const Page& page, absl::string_view chart_library) {
  const std::string title = HtmlEscape(page.title);
  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>fedcl-sim: ",
      title, "</title>\n<style>", page.style, "</style>\n</head><body>\n<h1>fedcl-sim: ", title,
      "</h1>\n", page.body,
      "\n<div id=\"charts\"></div>\n<script type=\"application/json\" id=\"report-data\">",
      page.data, "</script>\n<script>", chart_library, "</script>\n<script>(function () {",
      kChartHarness, page.charts, kChartHarnessEnd, "</script>\n</body></html>\n");
}

// Mean accuracy over seeds at each evaluated round of one (method, pattern), as [round, accuracy].
google::protobuf::ListValue AccuracySeries(const std::vector<RunResult>& runs,
                                           const std::string& method, const std::string& pattern) {
  std::map<int64_t, std::pair<double, int>> by_round;
  for (const RunResult& run : runs) {
    if (run.method != method || run.pattern != pattern) continue;
    for (const EvalPoint& point : run.evals) {
      by_round[point.round].first += point.accuracy;
      by_round[point.round].second += 1;
    }
  }
  google::protobuf::ListValue out;
  for (const auto& [round, sum] : by_round) {
    *out.add_values()->mutable_list_value() =
        proto::JsonArray({static_cast<double>(round), sum.first / sum.second});
  }
  return out;
}

// The heat-map as [round bin, client, fraction of the bin's rounds it took part in], with at most
// 400 bins so the page stays light for long runs.
v1::SimReportData::Heatmap HeatmapRecord(const ParticipationMap& map) {
  const int64_t bins = std::min<int64_t>(map.rounds, 400);
  const int64_t bin_rounds = (map.rounds + bins - 1) / std::max<int64_t>(bins, 1);
  v1::SimReportData::Heatmap out;
  out.set_clients(map.clients);
  out.set_bins(static_cast<int32_t>((map.rounds + bin_rounds - 1) / bin_rounds));
  out.set_bin_rounds(static_cast<int32_t>(bin_rounds));
  google::protobuf::ListValue* cells = out.mutable_cells();
  for (int c = 0; c < map.clients; ++c) {
    for (int64_t b = 0; b * bin_rounds < map.rounds; ++b) {
      int64_t count = 0, total = 0;
      for (int64_t t = b * bin_rounds; t < std::min(map.rounds, (b + 1) * bin_rounds); ++t) {
        count += map.participated[static_cast<size_t>(c) * map.rounds + t];
        ++total;
      }
      if (count == 0) continue;  // zeros are the background
      *cells->add_values()->mutable_list_value() = proto::JsonArray(
          {static_cast<double>(b), static_cast<double>(c), static_cast<double>(count) / total});
    }
  }
  return out;
}

// One pattern's charts: every method's accuracy, the heat-map, and the first FedAU run's weights.
v1::SimReportData::Pattern PatternRecord(const Scenario& scenario,
                                         const std::vector<RunResult>& runs,
                                         const std::map<std::string, ParticipationMap>& maps,
                                         const std::string& pattern) {
  v1::SimReportData::Pattern out;
  out.set_name(pattern);
  for (const MethodSpec& method : scenario.methods) {
    v1::SimReportData::Series* series = out.add_methods();
    series->set_label(method.label);
    *series->mutable_accuracy() = AccuracySeries(runs, method.label, pattern);
  }
  if (auto it = maps.find(pattern); it != maps.end() && it->second.clients > 0)
    *out.mutable_heatmap() = HeatmapRecord(it->second);
  for (const RunResult& run : runs) {
    if (run.pattern != pattern || run.inverse_probability_vs_weight.empty()) continue;
    out.set_weights_method(run.method);
    for (const auto& [inverse_p, weight] : run.inverse_probability_vs_weight)
      *out.mutable_weights()->add_values()->mutable_list_value() =
          proto::JsonArray({inverse_p, weight});
    break;
  }
  return out;
}

std::string SummaryTable(const Scenario& scenario, const std::vector<MethodSummary>& summaries) {
  std::string table =
      "<table><tr><th>method</th><th>pattern</th><th>final accuracy (mean ± std)</th>"
      "<th>seeds</th><th>server memory</th><th>wall time</th><th>note</th></tr>";
  for (const MethodSummary& s : summaries) {
    const MethodSpec* method = FindMethod(scenario, s.method);
    absl::StrAppendFormat(&table,
                          "<tr><td>%s</td><td>%s</td><td>%.4f ± %.4f</td><td>%d</td><td>%.1f "
                          "KiB</td><td>%.1f s</td><td>%s</td></tr>",
                          HtmlEscape(s.method), HtmlEscape(s.pattern), s.mean, s.stddev,
                          static_cast<int>(s.final_accuracy.size()), s.aggregator_bytes / 1024.0,
                          s.wall_seconds, HtmlEscape(method == nullptr ? "" : method->note));
  }
  return table + "</table>";
}

std::string ClSummaryTable(const std::vector<ClRunResult>& runs) {
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
    if (!r.online_metrics.has_value()) continue;
    absl::StrAppendFormat(&table,
                          "<tr><td>%s (online module only)</td><td>%d</td><td>%.4f</td>"
                          "<td>%.4f</td><td>%.4f</td><td>%.4f</td><td colspan=4></td></tr>",
                          HtmlEscape(r.method), r.seed, r.online_metrics->average_incremental,
                          r.online_metrics->last, r.online_metrics->forgetting,
                          r.online_metrics->backward_transfer);
  }
  return table + "</table>";
}

std::string OodTable(const std::vector<ClRunResult>& runs) {
  std::string table =
      "<h2>OOD detection after the first task</h2><table><tr><th>method</th>"
      "<th>seed</th><th>detector</th><th>shift</th><th>AUROC</th><th>FPR@95</th>"
      "<th>CUSUM delay (median / p90)</th><th>false alarms / 10k</th></tr>";
  for (const ClRunResult& r : runs) {
    for (const OodResult& o : r.ood) {
      absl::StrAppendFormat(&table,
                            "<tr><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%.4f</td>"
                            "<td>%.4f</td><td>%.0f / %.0f</td><td>%.1f</td></tr>",
                            HtmlEscape(r.method), r.seed, HtmlEscape(o.detector),
                            HtmlEscape(o.shift), o.auroc, o.fpr95, o.cusum_delay_median,
                            o.cusum_delay_p90, o.cusum_false_alarms_per_10k);
    }
  }
  return table + "</table>";
}

// Growing methods: each shifted task's detection by growth on the devices.
std::string ExpansionTable(const std::vector<ClRunResult>& runs) {
  std::string table =
      "<h2>Growth on shifts (devices)</h2><table><tr><th>method</th><th>seed</th><th>task</th>"
      "<th>devices grown / entered</th><th>delay in samples (median / p90)</th>"
      "<th>false alarms / 10k clean</th></tr>";
  bool any = false;
  for (const ClRunResult& r : runs) {
    if (r.expansion.empty()) continue;
    any = true;
    const v1::ClRunSummary record = ClRunRecord(r);
    for (const v1::ClRunSummary::Expansion& e : record.expansion()) {
      absl::StrAppendFormat(&table,
                            "<tr><td>%s</td><td>%d</td><td>%s</td><td>%d / %d</td>"
                            "<td>%.0f / %.0f</td><td>%.1f</td></tr>",
                            HtmlEscape(r.method), r.seed, HtmlEscape(e.task()), e.detected(),
                            e.devices(), e.delay_median(), e.delay_p90(),
                            record.expansion_false_alarms_per_10k());
    }
  }
  return any ? table + "</table>" : "";
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  return absl::StrReplaceAll(text,
                             {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

absl::StatusOr<std::string> ReportHtml(const Scenario& scenario, const std::vector<RunResult>& runs,
                                       const std::map<std::string, ParticipationMap>& maps,
                                       const std::vector<MethodSummary>& summaries,
                                       absl::string_view chart_library,
                                       const v1::SimTuning* tuning) {
  v1::SimReportData data;
  for (const PatternSpec& pattern : scenario.patterns)
    *data.add_patterns() = PatternRecord(scenario, runs, maps, pattern.name);
  if (tuning != nullptr) *data.mutable_tuning() = *tuning;
  Page page{.title = scenario.config.name(), .style = kFederatedStyle, .charts = kFederatedCharts};
  FEDCL_ASSIGN_OR_RETURN(page.data, proto::PrintJson(data));
  page.body = absl::StrCat(
      "<p>", scenario.num_clients(), " clients, ", scenario.rounds(), " rounds, ",
      scenario.config.seed_size(),
      " seed(s). Final accuracy: per seed, the mean over the last 10% of evaluations.</p>\n",
      SummaryTable(scenario, summaries), "<p>", HtmlEscape(Findings(summaries)), "</p>\n");
  return PageHtml(page, chart_library);
}

absl::StatusOr<std::string> ClReportHtml(const Scenario& scenario,
                                         const std::vector<ClRunResult>& runs,
                                         absl::string_view chart_library) {
  v1::ClReportData data;
  for (const ClRunResult& r : runs) *data.add_runs() = ClRunRecord(r, /*pool=*/true);
  Page page{.title = scenario.config.name(), .style = kContinualStyle, .charts = kContinualCharts};
  FEDCL_ASSIGN_OR_RETURN(page.data, proto::PrintJson(data));
  const v1::ContinualConfig& c = scenario.config.continual();
  page.body = absl::StrCat(
      "<p>Continual learning (", HtmlEscape(c.kind()), "): ", scenario.num_clients(), " devices, ",
      c.rounds_per_task(),
      " rounds per task. Ā: mean over tasks of the accuracy on every task seen so far; "
      "forgetting and BWT as algorithms.md §9.3.</p>\n",
      ClSummaryTable(runs), ExpansionTable(runs), OodTable(runs));
  return PageHtml(page, chart_library);
}

}  // namespace fedcl::sim
