// simple_cil: SimpleCIL (algorithms.md §8.1), no training at all: each class is the mean of its
// frozen features, and a sample goes to the class of the largest cosine similarity (logits are
// 16 × the similarities). Its private state is the per-class feature sums and counts, which the
// prototypes are rebuilt from. No options.
#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/method_util.h"
#include "core/cl/prototypes.h"

namespace fedcl::cl {
namespace {

constexpr float kCosineLogitScale = 16.0f;  // cosine similarities → logits

// The prototypes: the mean feature of every class seen.
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

class SimpleCilMethod final : public Method {
 public:
  absl::string_view name() const override { return "simple_cil"; }
  absl::Status Init(LearnerCore& core) override {
    prototypes_.emplace(core.model().backbone().feature_dim());
    return absl::OkStatus();
  }
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override {
    return {&core.model().head().parameters()};
  }
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override {
    return {{.name = "head", .role = peft::ModuleRole::kHead}};
  }
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override {
    // Running class means of the frozen features (prototypes never need gradients).
    core.model().Forward(images, false);
    const nn::Matrix& features = core.model().features();
    if (class_sums_.rows() == 0) {
      class_sums_ = nn::Matrix::Zero(core.num_classes(), features.cols());
      class_counts_.assign(core.num_classes(), 0);
    }
    for (int64_t i = 0; i < features.rows(); ++i) {
      class_sums_.row(labels[i]) += features.row(i);
      ++class_counts_[labels[i]];
    }
    FEDCL_ASSIGN_OR_RETURN(prototypes_, PrototypesOf(class_sums_, class_counts_,
                                                     core.model().backbone().feature_dim()));
    return LearnStats{};
  }
  absl::StatusOr<nn::Matrix> ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                         Inspection* hooks, int64_t start) override {
    core.model().Forward(images, false);
    core.CopyHooks(hooks, start, images.rows());
    if (prototypes_->classes() == 0)
      return absl::FailedPreconditionError("SimpleCIL has no class prototypes yet");
    FEDCL_ASSIGN_OR_RETURN(nn::Matrix similarities,
                           prototypes_->Similarities(core.model().features()));
    nn::Matrix logits = nn::Matrix::Constant(images.rows(), core.num_classes(), -1e9f);
    logits.leftCols(similarities.cols()) = kCosineLogitScale * similarities;
    return logits;
  }
  bool single_forward() const override { return false; }
  bool prediction_reads_state() const override { return true; }
  MethodState ExportState(const LearnerCore& core) const override {
    MethodState state;
    if (class_sums_.rows() == 0) return state;
    state.floats["class_sums"].assign(class_sums_.data(), class_sums_.data() + class_sums_.size());
    state.ints["class_counts"] = class_counts_;
    return state;
  }
  absl::Status RestoreState(LearnerCore& core, const MethodState& state) override;

 private:
  std::optional<PrototypeClassifier> prototypes_;
  nn::Matrix class_sums_;  // classes × feature dim (row-major), or empty before any Learn
  std::vector<int64_t> class_counts_;
};

absl::Status SimpleCilMethod::RestoreState(LearnerCore& core, const MethodState& state) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("simple_cil state: ", what));
  };
  const int64_t classes = core.num_classes();
  const int dim = core.model().backbone().feature_dim();
  nn::Matrix sums;
  std::vector<int64_t> counts;
  for (const auto& [key, values] : state.floats)
    if (key != "class_sums") return bad(absl::StrCat("unknown array '", key, "'"));
  for (const auto& [key, values] : state.ints)
    if (key != "class_counts") return bad(absl::StrCat("unknown array '", key, "'"));
  auto s = state.floats.find("class_sums");
  auto c = state.ints.find("class_counts");
  if ((s == state.floats.end()) != (c == state.ints.end()))
    return bad("class sums and counts come together");
  if (s != state.floats.end()) {
    if (static_cast<int64_t>(s->second.size()) != classes * dim ||
        static_cast<int64_t>(c->second.size()) != classes) {
      return bad(absl::StrCat(s->second.size(), " class-sum values and ", c->second.size(),
                              " counts for ", classes, " classes of dimension ", dim));
    }
    sums = Eigen::Map<const nn::Matrix>(s->second.data(), classes, dim);
    if (!sums.allFinite()) return bad("the class sums have non-finite values");
    counts = c->second;
    for (int64_t n : counts)
      if (n < 0) return bad("a negative class count");
  }
  // Built aside first: the method changes only once all of it worked.
  FEDCL_ASSIGN_OR_RETURN(PrototypeClassifier prototypes, PrototypesOf(sums, counts, dim));
  class_sums_ = std::move(sums);
  class_counts_ = std::move(counts);
  prototypes_ = std::move(prototypes);
  return absl::OkStatus();
}

}  // namespace

void RegisterSimpleCilMethod(MethodRegistry& registry) {
  RegisterMethodWithoutOptions<SimpleCilMethod>(
      registry, "simple_cil", "SimpleCIL: class means of the frozen features, no training");
}

}  // namespace fedcl::cl
