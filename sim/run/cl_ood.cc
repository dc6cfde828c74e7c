#include "sim/run/cl_ood.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/ood/detector_registry.h"
#include "core/ood/ood_metrics.h"
#include "core/ood/shift_tests.h"

namespace fedcl::sim {
namespace {

constexpr int kFitSamples = 2000;
// Shuffled streams per (detector, shift) for the CUSUM figures.
constexpr int kStreams = 20;

// The CUSUM figures of `r`: calibrated on `calibration`; false alarms over kStreams shuffles of
// `clean`; the delay of each of kStreams shuffles of `shifted` (from a fresh statistic).
absl::Status MeasureCusum(absl::Span<const float> calibration, absl::Span<const float> clean,
                          absl::Span<const float> shifted, OodResult& r) {
  FEDCL_ASSIGN_OR_RETURN(ood::CusumTest test, ood::CusumTest::Calibrate(calibration, {}));
  base::Rng rng(7);
  std::vector<float> stream(clean.begin(), clean.end());
  int64_t alarms = 0;
  for (int s = 0; s < kStreams; ++s) {
    rng.Shuffle(stream);
    for (float score : stream) alarms += test.Observe(score);
  }
  r.cusum_false_alarms_per_10k =
      alarms * 10000.0 / (static_cast<double>(kStreams) * static_cast<double>(clean.size()));
  std::vector<double> delays;
  stream.assign(shifted.begin(), shifted.end());
  for (int s = 0; s < kStreams; ++s) {
    rng.Shuffle(stream);
    test.Reset();
    double delay = -1;
    for (size_t t = 0; t < stream.size(); ++t) {
      if (test.Observe(stream[t])) {
        delay = static_cast<double>(t + 1);
        break;
      }
    }
    // Not found within the shifted samples: past their end, for the percentiles.
    delays.push_back(delay < 0 ? std::numeric_limits<double>::infinity() : delay);
  }
  std::sort(delays.begin(), delays.end());
  r.cusum_delay_median = DelayQuantile(delays, 0.5);
  r.cusum_delay_p90 = DelayQuantile(delays, 0.9);
  return absl::OkStatus();
}

absl::StatusOr<data::Dataset> Rows(const data::Dataset& d, int first, int last) {
  std::vector<int> idx(std::max(0, std::min(last, d.size()) - first));
  std::iota(idx.begin(), idx.end(), first);
  return data::Subset(d, idx);
}

}  // namespace

std::vector<std::string> DetectorNames(const v1::ContinualConfig& config) {
  if (config.detector().empty()) return ood::DetectorNames();
  return {config.detector().begin(), config.detector().end()};
}

absl::StatusOr<std::vector<OodResult>> ScoreDetectors(cl::Learner& learner,
                                                      const v1::ContinualConfig& config,
                                                      const std::vector<ClTask>& tasks) {
  const ClTask& first = tasks[0];
  const int half = first.test.size() / 2;
  FEDCL_ASSIGN_OR_RETURN(data::Dataset fit, Rows(first.train, 0, kFitSamples));
  FEDCL_ASSIGN_OR_RETURN(data::Dataset calibration, Rows(first.test, 0, half));
  FEDCL_ASSIGN_OR_RETURN(data::Dataset id, Rows(first.test, half, first.test.size()));
  FEDCL_ASSIGN_OR_RETURN(cl::Inspection fit_hooks, learner.Inspect(fit.images));
  FEDCL_ASSIGN_OR_RETURN(cl::Inspection cal_hooks, learner.Inspect(calibration.images));
  FEDCL_ASSIGN_OR_RETURN(cl::Inspection id_hooks, learner.Inspect(id.images));
  // The OOD sets: each later domain's copy of the ID images, or all later classes together.
  std::vector<std::pair<std::string, cl::Inspection>> ood_sets;
  if (config.kind() == "domains") {
    for (size_t t = 1; t < tasks.size(); ++t) {
      FEDCL_ASSIGN_OR_RETURN(data::Dataset shifted,
                             Rows(tasks[t].test, half, tasks[t].test.size()));
      FEDCL_ASSIGN_OR_RETURN(cl::Inspection hooks, learner.Inspect(shifted.images));
      ood_sets.emplace_back(tasks[t].name, std::move(hooks));
    }
  } else {
    data::Dataset unseen = tasks[1].test;
    for (size_t t = 2; t < tasks.size(); ++t) {
      unseen.images.conservativeResize(unseen.images.rows() + tasks[t].test.images.rows(),
                                       Eigen::NoChange);
      unseen.images.bottomRows(tasks[t].test.images.rows()) = tasks[t].test.images;
      unseen.labels.insert(unseen.labels.end(), tasks[t].test.labels.begin(),
                           tasks[t].test.labels.end());
    }
    FEDCL_ASSIGN_OR_RETURN(cl::Inspection hooks, learner.Inspect(unseen.images));
    ood_sets.emplace_back("unseen classes", std::move(hooks));
  }
  std::vector<OodResult> results;
  for (const std::string& detector_name : DetectorNames(config)) {
    FEDCL_ASSIGN_OR_RETURN(const ood::DetectorInfo* info, ood::FindDetector(detector_name));
    FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<ood::OodDetector> detector, info->create({.seed = 1}));
    const ood::FeatureNeeds& needs = info->needs;
    FEDCL_RETURN_IF_ERROR(detector->Fit(fit_hooks.Batch(needs), fit.labels));
    FEDCL_RETURN_IF_ERROR(detector->Calibrate(cal_hooks.Batch(needs)));
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> cal_scores, detector->Score(cal_hooks.Batch(needs)));
    FEDCL_ASSIGN_OR_RETURN(std::vector<float> id_scores, detector->Score(id_hooks.Batch(needs)));
    for (const auto& [name, hooks] : ood_sets) {
      FEDCL_ASSIGN_OR_RETURN(std::vector<float> ood_scores, detector->Score(hooks.Batch(needs)));
      OodResult r{.detector = detector_name, .shift = name};
      FEDCL_ASSIGN_OR_RETURN(r.auroc, ood::Auroc(id_scores, ood_scores));
      FEDCL_ASSIGN_OR_RETURN(r.fpr95, ood::FprAt95Tpr(id_scores, ood_scores));
      FEDCL_RETURN_IF_ERROR(MeasureCusum(cal_scores, id_scores, ood_scores, r));
      results.push_back(std::move(r));
    }
  }
  return results;
}

}  // namespace fedcl::sim
