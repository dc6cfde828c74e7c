#include "sim/report/outputs.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace fedcl::sim {
std::string Quote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '<':
        out += "\\u003c";
        break;  // keeps "</script>" out of inlined JSON
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Shortest round-trip form; JSON has no NaN or infinity, so those become null.
std::string Number(double value) {
  if (!std::isfinite(value)) return "null";
  return absl::StrFormat("%.10g", value);
}

std::string HtmlEscape(absl::string_view text) {
  return absl::StrReplaceAll(text,
                             {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

namespace {

// Mean accuracy over seeds at each evaluated round, for one (method, pattern).
std::string AccuracySeries(const std::vector<RunResult>& runs, const std::string& method,
                           const std::string& pattern) {
  std::map<int64_t, std::pair<double, int>> by_round;
  for (const RunResult& run : runs) {
    if (run.method != method || run.pattern != pattern) continue;
    for (const EvalPoint& point : run.evals) {
      by_round[point.round].first += point.accuracy;
      by_round[point.round].second += 1;
    }
  }
  std::string out = "[";
  for (const auto& [round, sum] : by_round) {
    if (out.size() > 1) out += ",";
    absl::StrAppend(&out, "[", round, ",", Number(sum.first / sum.second), "]");
  }
  return out + "]";
}

// The heat-map as [round bin, client, fraction of the bin's rounds it took part in], with at most
// 400 bins so the page stays light for long runs.
std::string HeatmapData(const ParticipationMap& map, int64_t* bin_rounds) {
  const int64_t bins = std::min<int64_t>(map.rounds, 400);
  *bin_rounds = (map.rounds + bins - 1) / std::max<int64_t>(bins, 1);
  std::string out = "[";
  for (int c = 0; c < map.clients; ++c) {
    for (int64_t b = 0; b * *bin_rounds < map.rounds; ++b) {
      int64_t count = 0, total = 0;
      for (int64_t t = b * *bin_rounds; t < std::min(map.rounds, (b + 1) * *bin_rounds); ++t) {
        count += map.participated[static_cast<size_t>(c) * map.rounds + t];
        ++total;
      }
      if (count == 0) continue;  // zeros are the background
      if (out.size() > 1) out += ",";
      absl::StrAppend(&out, "[", b, ",", c, ",", Number(static_cast<double>(count) / total), "]");
    }
  }
  return out + "]";
}

}  // namespace

// What every report page's script starts with: error tracking for the headless-browser test
// (data-errors, data-charts-rendered, data-charts-expected on <body>) and chart(title, option).
// A page script opens "(function () {", includes this, adds its charts and ends with
// kChartHarnessEnd.
const absl::string_view kChartHarness = R"JS(
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

const absl::string_view kChartHarnessEnd = R"JS(
  document.body.setAttribute('data-charts-expected', String(charts.length));
  mark();
  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
})();
)JS";

namespace {

constexpr absl::string_view kPageCharts = R"JS(
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

}  // namespace

std::string MetricsLine(const RunResult& run, const EvalPoint& p) {
  return absl::StrCat(
      "{\"method\":", Quote(run.method), ",\"pattern\":", Quote(run.pattern),
      ",\"seed\":", run.seed, ",\"round\":", p.round, ",\"accuracy\":", Number(p.accuracy),
      ",\"loss\":", Number(p.loss), ",\"train_loss\":", Number(p.train_loss),
      ",\"participants\":", p.participants, ",\"bytes_up\":", p.bytes_up,
      ",\"bytes_down\":", p.bytes_down,
      ",\"fedau_weight_error\":", p.weight_error < 0 ? "null" : Number(p.weight_error),
      ",\"wall_seconds\":", Number(p.wall_seconds),
      ",\"virtual_seconds\":", Number(p.virtual_seconds), "}");
}

double FinalAccuracy(const std::vector<EvalPoint>& evals) {
  if (evals.empty()) return 0.0;
  const size_t count = std::max<size_t>(1, (evals.size() + 9) / 10);
  double sum = 0.0;
  for (size_t i = evals.size() - count; i < evals.size(); ++i) sum += evals[i].accuracy;
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
        if (run.method != s.method || run.pattern != s.pattern) continue;
        s.final_accuracy.push_back(FinalAccuracy(run.evals));
        s.wall_seconds += run.wall_seconds;
        s.setup_seconds += run.setup_seconds;
        s.updates += run.updates;
        s.rss_bytes = std::max(s.rss_bytes, run.rss_bytes);
        s.aggregator_bytes = std::max(s.aggregator_bytes, run.aggregator_bytes);
        s.stragglers += run.stragglers;
        s.dropouts += run.dropouts;
      }
      if (s.final_accuracy.empty()) continue;
      for (double a : s.final_accuracy) s.mean += a;
      s.mean /= static_cast<double>(s.final_accuracy.size());
      if (s.final_accuracy.size() > 1) {
        double squares = 0.0;
        for (double a : s.final_accuracy) squares += (a - s.mean) * (a - s.mean);
        s.stddev = std::sqrt(squares / static_cast<double>(s.final_accuracy.size() - 1));
      }
      summaries.push_back(std::move(s));
    }
  }
  return summaries;
}

std::string SummaryJson(const Scenario& scenario, const std::vector<MethodSummary>& summaries,
                        double wall_seconds, int64_t peak_rss_bytes) {
  std::string out = absl::StrCat(
      "{\n  \"scenario\": ", Quote(scenario.config.name()),
      ",\n  \"clients\": ", scenario.num_clients(), ",\n  \"rounds\": ", scenario.rounds(),
      ",\n  \"wall_seconds\": ", Number(wall_seconds), ",\n  \"peak_rss_bytes\": ", peak_rss_bytes,
      ",\n  \"final_accuracy_definition\": ",
      Quote("per seed, mean test accuracy over the last 10% of "
            "evaluations; then mean and sample std over seeds"),
      ",\n  \"methods\": [");
  for (size_t i = 0; i < summaries.size(); ++i) {
    const MethodSummary& s = summaries[i];
    std::string finals;
    for (double a : s.final_accuracy)
      absl::StrAppend(&finals, finals.empty() ? "" : ",", Number(a));
    absl::StrAppend(
        &out, i == 0 ? "\n" : ",\n", "    {\"method\": ", Quote(s.method),
        ", \"pattern\": ", Quote(s.pattern), ", \"final_accuracy_mean\": ", Number(s.mean),
        ", \"final_accuracy_std\": ", Number(s.stddev), ", \"final_accuracy_per_seed\": [", finals,
        "], \"seeds\": ", s.final_accuracy.size(), ", \"wall_seconds\": ", Number(s.wall_seconds),
        ", \"setup_seconds\": ", Number(s.setup_seconds), ", \"updates\": ", s.updates,
        ", \"rss_bytes_at_end\": ", s.rss_bytes, ", \"aggregator_bytes\": ", s.aggregator_bytes,
        ", \"stragglers\": ", s.stragglers, ", \"dropouts\": ", s.dropouts, "}");
  }
  absl::StrAppend(&out, "\n  ]\n}\n");
  return out;
}

std::string ReportHtml(const Scenario& scenario, const std::vector<RunResult>& runs,
                       const std::map<std::string, ParticipationMap>& maps,
                       const std::vector<MethodSummary>& summaries,
                       absl::string_view chart_library) {
  // The data the page script draws from.
  std::string data = "{\"patterns\":[";
  for (size_t p = 0; p < scenario.patterns.size(); ++p) {
    const std::string& pattern = scenario.patterns[p].name;
    absl::StrAppend(&data, p == 0 ? "" : ",", "{\"name\":", Quote(pattern), ",\"methods\":[");
    for (size_t m = 0; m < scenario.methods.size(); ++m) {
      const std::string& label = scenario.methods[m].label;
      absl::StrAppend(&data, m == 0 ? "" : ",", "{\"label\":", Quote(label),
                      ",\"accuracy\":", AccuracySeries(runs, label, pattern), "}");
    }
    data += "]";
    if (auto it = maps.find(pattern); it != maps.end() && it->second.clients > 0) {
      int64_t bin_rounds = 1;
      std::string cells = HeatmapData(it->second, &bin_rounds);
      absl::StrAppend(&data, ",\"heatmap\":{\"clients\":", it->second.clients,
                      ",\"bins\":", (it->second.rounds + bin_rounds - 1) / bin_rounds,
                      ",\"bin_rounds\":", bin_rounds, ",\"cells\":", cells, "}");
    }
    for (const RunResult& run : runs) {
      if (run.pattern != pattern || run.inverse_probability_vs_weight.empty()) continue;
      data += ",\"weights_method\":" + Quote(run.method) + ",\"weights\":[";
      for (size_t i = 0; i < run.inverse_probability_vs_weight.size(); ++i) {
        const auto& [inverse_p, weight] = run.inverse_probability_vs_weight[i];
        absl::StrAppend(&data, i == 0 ? "" : ",", "[", Number(inverse_p), ",", Number(weight), "]");
      }
      data += "]";
      break;
    }
    data += "}";
  }
  data += "]}";

  std::string table =
      "<table><tr><th>method</th><th>pattern</th><th>final accuracy (mean ± std)</th>"
      "<th>seeds</th><th>server memory</th><th>wall time</th><th>note</th></tr>";
  for (const MethodSummary& s : summaries) {
    std::string note;
    for (const MethodSpec& m : scenario.methods) {
      if (m.label == s.method) note = m.note;
    }
    absl::StrAppendFormat(&table,
                          "<tr><td>%s</td><td>%s</td><td>%.4f ± %.4f</td><td>%d</td><td>%.1f "
                          "KiB</td><td>%.1f s</td><td>%s</td></tr>",
                          HtmlEscape(s.method), HtmlEscape(s.pattern), s.mean, s.stddev,
                          static_cast<int>(s.final_accuracy.size()), s.aggregator_bytes / 1024.0,
                          s.wall_seconds, HtmlEscape(note));
  }
  table += "</table>";

  return absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>fedcl-sim: ",
      HtmlEscape(scenario.config.name()),
      "</title>\n<style>body{font-family:sans-serif;margin:24px;color:#222}"
      ".chart{width:100%;max-width:1100px;height:420px;margin:16px 0}"
      "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
      "text-align:left}</style>\n</head><body>\n<h1>fedcl-sim: ",
      HtmlEscape(scenario.config.name()), "</h1>\n<p>", scenario.num_clients(), " clients, ",
      scenario.rounds(), " rounds, ", scenario.config.seed_size(),
      " seed(s). Final accuracy: per seed, the mean over the last 10% of evaluations.</p>\n", table,
      "\n<div id=\"charts\"></div>\n<script type=\"application/json\" id=\"report-data\">", data,
      "</script>\n<script>", chart_library, "</script>\n<script>(function () {", kChartHarness,
      kPageCharts, kChartHarnessEnd, "</script>\n</body></html>\n");
}

}  // namespace fedcl::sim
