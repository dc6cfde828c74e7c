// Fair tuning of a federated scenario's methods (fedcl-sim --tune, with the scenario's `tuning`
// block, proto/fedcl/v1/scenario.proto):
// every method runs the same kind of grid, local η × server γ (a method may bring its own γ grid,
// tune_global_learning_rate), and is selected on data it is not reported on.
//   - validation: a fixed share of the training set (tuning.validation_fraction), drawn by a
//     permutation keyed by the first tuning seed; grid runs partition and train on the rest and
//     are scored on it. The test set is never read here;
//   - score: a run's final accuracy (the mean of its last 10% of evaluations, as the summary's),
//     averaged over the scenario's patterns and the tuning seeds;
//   - selection: the best score; ties go to the point first in the grid (η outer, γ inner);
//   - the scenario's runs then use each method's selected (η, γ), on the full training set,
//     evaluated on the test set as always.
// Written to --out: tuning.json (SimTuning: every grid point's score, per pattern too, and the
// selection) and tuned_methods.textproto (the method blocks with the selected settings, to paste
// into a scenario that should not tune every time). A sensitivity table goes to stdout.
#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "google/protobuf/text_format.h"
#include "proto/fedcl/v1/sim_report.pb.h"
#include "proto/json.h"
#include "sim/modes/modes.h"
#include "sim/modes/progress.h"
#include "sim/report/summary.h"
#include "sim/run/engine.h"

namespace fedcl::sim {
namespace {

constexpr uint64_t kValidationStream = 0x56414c4944415445;

// The training set split into what grid runs train on and what they are scored on.
absl::StatusOr<SimulationInputs> TuningInputs(const Scenario& scenario,
                                              const SimulationInputs& inputs, int* validation) {
  const v1::TuningConfig& tuning = scenario.config.tuning();
  std::vector<int> order(static_cast<size_t>(inputs.train.size()));
  std::iota(order.begin(), order.end(), 0);
  base::Rng rng = base::Rng::ForStream(tuning.seed(0), {kValidationStream});
  rng.Shuffle(order);
  *validation = static_cast<int>(tuning.validation_fraction() * inputs.train.size());
  if (*validation < 1 || *validation >= inputs.train.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tuning.validation_fraction ", tuning.validation_fraction(), " of ", inputs.train.size(),
        " training samples leaves no validation or no training data"));
  }
  const std::vector<int> held(order.begin(), order.begin() + *validation);
  const std::vector<int> rest(order.begin() + *validation, order.end());
  SimulationInputs split;
  FEDCL_ASSIGN_OR_RETURN(split.train, data::Subset(inputs.train, rest));
  FEDCL_ASSIGN_OR_RETURN(split.test, data::Subset(inputs.train, held));
  if (inputs.pretrained != nullptr) {
    // A model with the pretrained backbone stands in for the checkpoint.
    FEDCL_ASSIGN_OR_RETURN(split.pretrained, MakeModel(scenario, inputs, tuning.seed(0)));
  }
  split.trace = inputs.trace;
  split.profiles = inputs.profiles;
  return split;
}

std::vector<double> OwnOr(const google::protobuf::RepeatedField<double>& grid, double own) {
  if (grid.empty()) return {own};
  return std::vector<double>(grid.begin(), grid.end());
}

std::string SensitivityTable(const v1::SimTuning& tuning) {
  std::string out = "tuning: final validation accuracy per (eta, gamma); * = selected\n";
  for (const v1::SimTuning::Method& m : tuning.methods()) {
    absl::StrAppend(&out, "  ", m.method(), "\n");
    for (const v1::SimTuning::Point& p : m.grid()) {
      const bool selected = p.learning_rate() == m.selected_learning_rate() &&
                            p.global_learning_rate() == m.selected_global_learning_rate();
      absl::StrAppendFormat(&out, "    eta %-8g gamma %-8g %.4f%s\n", p.learning_rate(),
                            p.global_learning_rate(), p.validation_accuracy(),
                            selected ? " *" : "");
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<TunedScenario> TuneMethods(const Scenario& scenario, const SimulationInputs& inputs,
                                          const FederatedRunOptions& options,
                                          base::FileSystem& fs) {
  const auto started = std::chrono::steady_clock::now();
  const v1::TuningConfig& config = scenario.config.tuning();
  int validation = 0;
  FEDCL_ASSIGN_OR_RETURN(SimulationInputs split, TuningInputs(scenario, inputs, &validation));
  Scenario grid_scenario = scenario;
  grid_scenario.config.set_rounds(config.rounds());
  Engine engine(grid_scenario, split);

  v1::SimTuning record;
  record.set_scenario(scenario.config.name());
  record.set_validation_fraction(config.validation_fraction());
  record.set_validation_samples(validation);
  record.set_training_samples(split.train.size());
  for (uint64_t seed : config.seed()) record.add_seeds(static_cast<double>(seed));
  record.set_rounds(static_cast<int32_t>(config.rounds()));

  int64_t total = 0;
  for (int i = 0; i < static_cast<int>(scenario.methods.size()); ++i) {
    const v1::SimMethod& m = scenario.config.method(i);
    const auto& gammas = m.tune_global_learning_rate().empty() ? config.global_learning_rate()
                                                               : m.tune_global_learning_rate();
    total +=
        static_cast<int64_t>(std::max(1, config.learning_rate_size())) * std::max(1, gammas.size());
  }
  total *= static_cast<int64_t>(scenario.patterns.size()) * config.seed_size();
  Progress progress(options.progress, total * config.rounds());

  Scenario tuned = scenario;
  int64_t index = 0;
  for (size_t i = 0; i < scenario.methods.size(); ++i) {
    const MethodSpec& method = scenario.methods[i];
    const v1::SimMethod& declared = scenario.config.method(static_cast<int>(i));
    const std::vector<double> etas = OwnOr(config.learning_rate(), method.recipe.learning_rate);
    const std::vector<double> gammas =
        OwnOr(declared.tune_global_learning_rate().empty() ? config.global_learning_rate()
                                                           : declared.tune_global_learning_rate(),
              method.aggregator.global_learning_rate);
    v1::SimTuning::Method* out = record.add_methods();
    out->set_method(method.label);
    double best = -1.0;
    for (double eta : etas) {
      for (double gamma : gammas) {
        MethodSpec point = method;
        point.recipe.learning_rate = static_cast<float>(eta);
        point.aggregator.global_learning_rate = gamma;
        v1::SimTuning::Point* scored = out->add_grid();
        scored->set_learning_rate(static_cast<float>(eta));
        scored->set_global_learning_rate(gamma);
        double sum = 0.0;
        for (const PatternSpec& pattern : scenario.patterns) {
          double pattern_sum = 0.0;
          for (uint64_t seed : config.seed()) {
            progress.StartRun(absl::StrFormat("[tune %d/%d] %s eta %g gamma %g %s seed %d", ++index,
                                              total, method.label, eta, gamma, pattern.name, seed));
            absl::StatusOr<RunResult> run = engine.Run(point, pattern, seed, nullptr);
            progress.EndRun();
            if (!run.ok()) {
              return absl::Status(
                  run.status().code(),
                  absl::StrCat("tuning ", method.label, " eta ", eta, " gamma ", gamma, " / ",
                               pattern.name, " / seed ", seed, ": ", run.status().message()));
            }
            pattern_sum += FinalAccuracy(run->evals);
          }
          const double pattern_mean = pattern_sum / config.seed_size();
          scored->add_validation_accuracy_per_pattern(pattern_mean);
          sum += pattern_mean;
        }
        const double score = sum / static_cast<double>(scenario.patterns.size());
        scored->set_validation_accuracy(score);
        if (score > best) {
          best = score;
          out->set_selected_learning_rate(scored->learning_rate());
          out->set_selected_global_learning_rate(gamma);
          out->set_selected_validation_accuracy(score);
        }
      }
    }
    MethodSpec& selected = tuned.methods[i];
    selected.recipe.learning_rate = static_cast<float>(out->selected_learning_rate());
    selected.aggregator.global_learning_rate = out->selected_global_learning_rate();
    selected.note =
        absl::StrFormat("eta = %g, gamma = %g selected on a %.0f%% validation split (tuning.json)",
                        out->selected_learning_rate(), out->selected_global_learning_rate(),
                        100 * config.validation_fraction());
    v1::SimMethod* written = tuned.config.mutable_method(static_cast<int>(i));
    written->mutable_recipe()->set_learning_rate(selected.recipe.learning_rate);
    written->mutable_aggregator()->set_global_learning_rate(
        selected.aggregator.global_learning_rate);
    written->set_note(selected.note);
    written->clear_tune_global_learning_rate();
  }
  record.set_wall_seconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());

  FEDCL_ASSIGN_OR_RETURN(std::string json, proto::PrintJson(record, proto::JsonLayout::kIndented));
  FEDCL_RETURN_IF_ERROR(
      fs.WriteFileAtomically(base::JoinPath(options.out, "tuning.json"), json + "\n"));
  std::string methods = absl::StrCat("# ", scenario.config.name(),
                                     ": the methods at their settings selected by fedcl-sim's "
                                     "tuning block (tuning.json)\n");
  for (const v1::SimMethod& m : tuned.config.method()) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(m, &text);
    absl::StrAppend(&methods, "method {\n");
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&methods, "  ", line, "\n");
    }
    absl::StrAppend(&methods, "}\n");
  }
  FEDCL_RETURN_IF_ERROR(
      fs.WriteFileAtomically(base::JoinPath(options.out, "tuned_methods.textproto"), methods));
  std::printf("%s", SensitivityTable(record).c_str());
  tuned.config.clear_tuning();
  return TunedScenario{std::move(tuned), std::move(record)};
}

}  // namespace fedcl::sim
