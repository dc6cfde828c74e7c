// Learner: its progress out and back in (learner.h, LearnerProgress), and SimpleCIL's prototypes
// rebuilt from the class sums both Learn and a restore leave behind.
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/learner.h"

namespace fedcl::cl {

namespace {

// SimpleCIL's prototypes: the mean feature of every class seen.
absl::StatusOr<PrototypeClassifier> PrototypesOf(const nn::Matrix& sums,
                                                 const std::vector<int64_t>& counts, int dim) {
  PrototypeClassifier prototypes(dim);
  std::vector<int32_t> classes;
  for (size_t c = 0; c < counts.size(); ++c)
    if (counts[c] > 0) classes.push_back(static_cast<int32_t>(c));
  if (classes.empty()) return prototypes;
  nn::Matrix means(static_cast<int64_t>(classes.size()), sums.cols());
  for (size_t i = 0; i < classes.size(); ++i)
    means.row(i) = sums.row(classes[i]) / static_cast<float>(counts[classes[i]]);
  FEDCL_RETURN_IF_ERROR(prototypes.AddClasses(means, classes));
  return prototypes;
}

}  // namespace

absl::Status Learner::RebuildPrototypes() {
  FEDCL_ASSIGN_OR_RETURN(
      PrototypeClassifier prototypes,
      PrototypesOf(class_sums_, class_counts_, model_->backbone().feature_dim()));
  prototypes_ = std::move(prototypes);
  return absl::OkStatus();
}

LearnerProgress Learner::ExportProgress() const {
  LearnerProgress p;
  p.task = task_;
  p.task_steps = task_steps_;
  p.learned_classes = learned_classes_;
  p.task_labels = task_labels_;
  if (offline_.has_value()) p.lae_offline = offline_->offline().flat_values();
  p.class_sums = class_sums_;
  p.class_counts = class_counts_;
  return p;
}

absl::Status Learner::RestoreProgress(const LearnerProgress& p) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("learner progress: ", what));
  };
  const size_t classes = static_cast<size_t>(model_->config().num_classes);
  if (p.task < -1 || p.task_steps < 0) return bad("negative task counters");
  for (const std::vector<bool>* flags : {&p.learned_classes, &p.task_labels}) {
    if (!flags->empty() && flags->size() != classes)
      return bad(absl::StrCat(flags->size(), " class flags for ", classes, " classes"));
  }
  if (p.lae_offline.has_value()) {
    if (options_.method != ClMethod::kLae) return bad("an offline module for a method without one");
    if (p.lae_offline->size() != adapter_->parameters().num_values()) {
      return bad(absl::StrCat("an offline module of ", p.lae_offline->size(),
                              " values for an adapter of ", adapter_->parameters().num_values()));
    }
    if (!p.lae_offline->allFinite()) return bad("the offline module has non-finite values");
  }
  const bool has_sums = p.class_sums.size() > 0 || !p.class_counts.empty();
  if (has_sums) {
    if (options_.method != ClMethod::kSimpleCil) return bad("class sums for a method without any");
    const int64_t dim = model_->backbone().feature_dim();
    if (p.class_sums.rows() != static_cast<int64_t>(classes) || p.class_sums.cols() != dim ||
        p.class_counts.size() != classes) {
      return bad(absl::StrCat("class sums of ", p.class_sums.rows(), " × ", p.class_sums.cols(),
                              " with ", p.class_counts.size(), " counts for ", classes,
                              " classes of dimension ", dim));
    }
    if (!p.class_sums.allFinite()) return bad("the class sums have non-finite values");
    for (int64_t n : p.class_counts)
      if (n < 0) return bad("a negative class count");
  }

  // What can still fail is built aside first: the learner changes only once all of it worked.
  std::optional<EmaAccumulator> offline;
  if (p.lae_offline.has_value()) {
    FEDCL_ASSIGN_OR_RETURN(offline, NewOffline());
    offline->mutable_offline().flat_values() = *p.lae_offline;
  }
  std::optional<PrototypeClassifier> prototypes;
  if (options_.method == ClMethod::kSimpleCil) {
    FEDCL_ASSIGN_OR_RETURN(
        prototypes, PrototypesOf(p.class_sums, p.class_counts, model_->backbone().feature_dim()));
    class_sums_ = p.class_sums;
    class_counts_ = p.class_counts;
    prototypes_ = std::move(prototypes);
  }
  task_ = p.task;
  task_steps_ = p.task_steps;
  learned_classes_ = p.learned_classes;
  task_labels_ = p.task_labels;
  offline_ = std::move(offline);
  return absl::OkStatus();
}

}  // namespace fedcl::cl
