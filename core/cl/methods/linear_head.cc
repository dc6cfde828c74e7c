// linear_head: the frozen backbone with a linear head trained on everything (the baseline every
// continual method is read against). No options.
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/method_util.h"

namespace fedcl::cl {
namespace {

class LinearHeadMethod final : public Method {
 public:
  absl::string_view name() const override { return "linear_head"; }
  absl::Status Init(LearnerCore& core) override { return absl::OkStatus(); }
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override {
    return {&core.model().head().parameters()};
  }
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override {
    return {{.name = "head", .role = peft::ModuleRole::kHead}};
  }
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override {
    LearnStats stats;
    stats.loss = core.StepOn(images, labels, {&core.model().head().parameters()});
    return stats;
  }
};

}  // namespace

void RegisterLinearHeadMethod(MethodRegistry& registry) {
  RegisterMethodWithoutOptions<LinearHeadMethod>(
      registry, "linear_head", "a linear head on the frozen backbone, trained on everything");
}

}  // namespace fedcl::cl
