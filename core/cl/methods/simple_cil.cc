// simple_cil and fed_simple_cil: SimpleCIL (algorithms.md §8.1), no training at all: each class is
// the mean of its frozen features, and a sample goes to the class of the largest cosine
// similarity (logits are 16 × the similarities). Both keep per-class feature sums and counts
// (peft::NewClassStatistics), from which the prototypes are rebuilt.
//
// - simple_cil keeps them to itself (its private state); it shares only the untrained head, so
//   that a server has a module to list.
// - fed_simple_cil shares them and nothing else: one class-statistics module, which the server
//   sums exactly over devices (the "sum" rule, whatever its aggregator). A device's upload is
//   what it added since its last sync — the sums and counts of the samples it saw, never a model
//   — and its download is every device's statistics, so its prototypes are the class means over
//   all the federation's samples: the same classifier one device would build from the pooled
//   data, up to the order of float additions. Classes a device has not seen yet are predicted
//   as soon as another device has. Departure from the paper (a single-site method): the
//   federation; the prototypes themselves are unchanged.
// No options.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/method_util.h"
#include "core/cl/prototypes.h"
#include "core/peft/class_statistics.h"

namespace fedcl::cl {
namespace {

constexpr float kCosineLogitScale = 16.0f;  // cosine similarities → logits

// The prototypes: the mean feature of every class with samples.
absl::StatusOr<PrototypeClassifier> PrototypesOf(const nn::ParameterSet& stats) {
  const int64_t classes = stats.info(1).size, dim = stats.info(0).shape[1];
  PrototypeClassifier prototypes(static_cast<int>(dim));
  const Eigen::Map<const nn::Matrix> sums(stats.values(0), classes, dim);
  const float* counts = stats.values(1);
  std::vector<int32_t> seen;
  for (int64_t c = 0; c < classes; ++c)
    if (counts[c] > 0) seen.push_back(static_cast<int32_t>(c));
  if (seen.empty()) return prototypes;
  nn::Matrix means(static_cast<int64_t>(seen.size()), dim);
  for (size_t i = 0; i < seen.size(); ++i) means.row(i) = sums.row(seen[i]) / counts[seen[i]];
  FEDCL_RETURN_IF_ERROR(prototypes.AddClasses(means, seen));
  return prototypes;
}

class SimpleCilMethod final : public Method {
 public:
  explicit SimpleCilMethod(bool federated) : federated_(federated) {}
  absl::string_view name() const override { return federated_ ? "fed_simple_cil" : "simple_cil"; }
  absl::Status Init(LearnerCore& core) override {
    stats_ = peft::NewClassStatistics(kModuleName, core.num_classes(),
                                      core.model().backbone().feature_dim());
    prototypes_.emplace(core.model().backbone().feature_dim());
    return absl::OkStatus();
  }
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override {
    if (federated_) return {&stats_};
    return {&core.model().head().parameters()};
  }
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override {
    if (federated_) return {{.name = kModuleName, .role = peft::ModuleRole::kClassStatistics}};
    return {{.name = "head", .role = peft::ModuleRole::kHead}};
  }
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override;
  absl::StatusOr<nn::Matrix> ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                         Inspection* hooks, int64_t start) override;
  bool single_forward() const override { return false; }
  bool prediction_reads_state() const override { return true; }
  MethodState ExportState(const LearnerCore& core) const override;
  absl::Status RestoreState(LearnerCore& core, const MethodState& state) override;
  int64_t ModuleValues() const override { return stats_.num_values(); }

 private:
  static constexpr char kModuleName[] = "class_statistics";
  // The prototypes of the statistics as they are now: a download may have replaced them since
  // the last call (fed_simple_cil), so they are rebuilt when the statistics changed.
  absl::Status RefreshPrototypes();

  const bool federated_;
  nn::ParameterSet stats_;  // class_sums [classes, dim], class_counts [classes]
  std::optional<PrototypeClassifier> prototypes_;
  Eigen::VectorXf prototypes_from_;  // the statistics prototypes_ was built from
};

absl::StatusOr<LearnStats> SimpleCilMethod::Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                                  absl::Span<const int32_t> labels) {
  float* counts = stats_.values(1);
  for (int32_t label : labels) {
    if (counts[label] + static_cast<float>(labels.size()) > peft::kMaxClassCount) {
      return absl::ResourceExhaustedError(absl::StrCat(
          name(), ": class ", label, " holds 2^24 samples, as many as its count keeps exactly"));
    }
  }
  // Running class sums of the frozen features (prototypes never need gradients).
  core.model().Forward(images, false);
  const nn::Matrix& features = core.model().features();
  Eigen::Map<nn::Matrix> sums(stats_.values(0), stats_.info(0).shape[0], features.cols());
  for (int64_t i = 0; i < features.rows(); ++i) {
    sums.row(labels[i]) += features.row(i);
    counts[labels[i]] += 1.0f;
  }
  return LearnStats{};
}

absl::Status SimpleCilMethod::RefreshPrototypes() {
  if (prototypes_from_.size() == stats_.num_values() && prototypes_from_ == stats_.flat_values())
    return absl::OkStatus();
  // Downloaded statistics are checked before use: a server's negative count must not become a
  // prototype.
  FEDCL_RETURN_IF_ERROR(
      peft::CheckClassStatistics(stats_, stats_.info(0).shape[0], stats_.info(0).shape[1]));
  FEDCL_ASSIGN_OR_RETURN(prototypes_, PrototypesOf(stats_));
  prototypes_from_ = stats_.flat_values();
  return absl::OkStatus();
}

absl::StatusOr<nn::Matrix> SimpleCilMethod::ChunkLogits(LearnerCore& core,
                                                        nn::ConstMatrixRef images,
                                                        Inspection* hooks, int64_t start) {
  core.model().Forward(images, false);
  core.CopyHooks(hooks, start, images.rows());
  FEDCL_RETURN_IF_ERROR(RefreshPrototypes());
  if (prototypes_->classes() == 0)
    return absl::FailedPreconditionError(absl::StrCat(name(), " has no class prototypes yet"));
  FEDCL_ASSIGN_OR_RETURN(nn::Matrix similarities,
                         prototypes_->Similarities(core.model().features()));
  nn::Matrix logits = nn::Matrix::Constant(images.rows(), core.num_classes(), -1e9f);
  logits.leftCols(similarities.cols()) = kCosineLogitScale * similarities;
  return logits;
}

MethodState SimpleCilMethod::ExportState(const LearnerCore& core) const {
  MethodState state;
  // fed_simple_cil's statistics are its shared module, which hosts keep with the session.
  if (federated_) return state;
  const float* counts = stats_.values(1);
  const int64_t classes = stats_.info(1).size;
  if (std::all_of(counts, counts + classes, [](float n) { return n == 0.0f; })) return state;
  state.floats["class_sums"].assign(stats_.values(0), stats_.values(0) + stats_.info(0).size);
  state.ints["class_counts"].assign(counts, counts + classes);
  return state;
}

absl::Status SimpleCilMethod::RestoreState(LearnerCore& core, const MethodState& state) {
  auto bad = [this](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " state: ", what));
  };
  if (federated_) {
    if (!state.empty()) return bad("fed_simple_cil keeps no private state");
    return absl::OkStatus();
  }
  const int64_t classes = core.num_classes();
  const int dim = core.model().backbone().feature_dim();
  for (const auto& [key, values] : state.floats)
    if (key != "class_sums") return bad(absl::StrCat("unknown array '", key, "'"));
  for (const auto& [key, values] : state.ints)
    if (key != "class_counts") return bad(absl::StrCat("unknown array '", key, "'"));
  auto s = state.floats.find("class_sums");
  auto c = state.ints.find("class_counts");
  if ((s == state.floats.end()) != (c == state.ints.end()))
    return bad("class sums and counts come together");
  // Built aside first: the method changes only once all of it was checked.
  nn::ParameterSet restored = peft::NewClassStatistics(kModuleName, classes, dim);
  if (s != state.floats.end()) {
    if (static_cast<int64_t>(s->second.size()) != classes * dim ||
        static_cast<int64_t>(c->second.size()) != classes) {
      return bad(absl::StrCat(s->second.size(), " class-sum values and ", c->second.size(),
                              " counts for ", classes, " classes of dimension ", dim));
    }
    for (int64_t n : c->second) {
      if (n < 0 || n > static_cast<int64_t>(peft::kMaxClassCount))
        return bad(absl::StrCat("class count ", n, " is outside [0, 2^24]"));
    }
    std::copy(s->second.begin(), s->second.end(), restored.values(0));
    std::copy(c->second.begin(), c->second.end(), restored.values(1));
  }
  if (absl::Status checked = peft::CheckClassStatistics(restored, classes, dim); !checked.ok())
    return bad(std::string(checked.message()));
  FEDCL_ASSIGN_OR_RETURN(PrototypeClassifier prototypes, PrototypesOf(restored));
  stats_ = std::move(restored);
  prototypes_ = std::move(prototypes);
  prototypes_from_ = stats_.flat_values();
  return absl::OkStatus();
}

}  // namespace

void RegisterSimpleCilMethod(MethodRegistry& registry) {
  registry.Register("simple_cil",
                    "SimpleCIL: class means of the frozen features, no training, nothing shared",
                    [](const MethodConfig& config) -> absl::StatusOr<std::unique_ptr<Method>> {
                      FEDCL_RETURN_IF_ERROR(RefuseOptions(config));
                      return std::make_unique<SimpleCilMethod>(false);
                    });
  registry.Register(
      "fed_simple_cil",
      "federated SimpleCIL: class feature sums and counts summed exactly across devices",
      [](const MethodConfig& config) -> absl::StatusOr<std::unique_ptr<Method>> {
        FEDCL_RETURN_IF_ERROR(RefuseOptions(config));
        return std::make_unique<SimpleCilMethod>(true);
      });
}

}  // namespace fedcl::cl
