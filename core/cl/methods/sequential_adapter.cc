// sequential_adapter: one bottleneck adapter per chosen block, fine-tuned on every task in turn
// with the head (the forgetting baseline).
//
// Options: adapter_bottleneck (8), blocks ([2, 3]).
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/method_util.h"

namespace fedcl::cl {
namespace {

class SequentialAdapterMethod final : public HeadAndAdapterMethod {
 public:
  SequentialAdapterMethod() : HeadAndAdapterMethod({2, 3}, 8) {}
  static absl::StatusOr<std::unique_ptr<Method>> Create(const MethodConfig& config) {
    auto method = std::make_unique<SequentialAdapterMethod>();
    FEDCL_ASSIGN_OR_RETURN(base::OptionText options,
                           base::OptionText::Parse(config.options, "method sequential_adapter"));
    FEDCL_RETURN_IF_ERROR(options.Read("adapter_bottleneck", &method->bottleneck_));
    FEDCL_RETURN_IF_ERROR(options.ReadList("blocks", &method->blocks_));
    FEDCL_RETURN_IF_ERROR(options.CheckAllRead());
    if (method->bottleneck_ < 1)
      return absl::InvalidArgumentError(
          "method sequential_adapter: adapter_bottleneck must be >= 1");
    return method;
  }
  absl::string_view name() const override { return "sequential_adapter"; }
  absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                   absl::Span<const int32_t> labels) override {
    LearnStats stats;
    stats.loss =
        core.StepOn(images, labels, {&core.model().head().parameters(), &adapter_->parameters()});
    return stats;
  }
  int64_t ModuleValues() const override { return adapter_->parameters().num_values(); }
};

}  // namespace

void RegisterSequentialAdapterMethod(MethodRegistry& registry) {
  RegisterMethod<SequentialAdapterMethod>(
      registry, "sequential_adapter",
      "one adapter per chosen block and the head, fine-tuned on every task in turn");
}

}  // namespace fedcl::cl
