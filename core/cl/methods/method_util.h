// Pieces several continual methods share: the bottleneck adapter they attach to some blocks of a
// ViT, and the registration of a method from its options text.
#ifndef FEDCL_CORE_CL_METHODS_METHOD_UTIL_H_
#define FEDCL_CORE_CL_METHODS_METHOD_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/status_macros.h"
#include "core/cl/learner_core.h"
#include "core/cl/method.h"
#include "core/peft/pet_module.h"

namespace fedcl::cl {

// InvalidArgument unless the model is a ViT with every block of `blocks` (`what` names the
// method and the option in the message).
absl::Status CheckVitBlocks(const nn::Model& model, const std::vector<int>& blocks,
                            absl::string_view what);

// The PET configuration of a bottleneck adapter on `blocks` (one per block, parallel to its MLP).
peft::PetConfig AdapterConfig(const std::vector<int>& blocks, int bottleneck);

// Creates an adapter named "adapter" on `blocks` of the core's ViT, initialised from its random
// stream, and attaches it.
absl::StatusOr<std::unique_ptr<peft::PetModule>> AttachAdapter(LearnerCore& core,
                                                               const std::vector<int>& blocks,
                                                               int bottleneck);

// A method that shares the head and one bottleneck adapter on `blocks_` of a ViT
// (sequential_adapter; LAE's online module): what it attaches and shares, written once.
class HeadAndAdapterMethod : public Method {
 public:
  absl::Status Init(LearnerCore& core) override;
  std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) override {
    return {&core.model().head().parameters(), &adapter_->parameters()};
  }
  std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) override {
    return {{.name = "head", .role = peft::ModuleRole::kHead},
            {.name = "adapter",
             .role = peft::ModuleRole::kPet,
             .pet = AdapterConfig(blocks_, bottleneck_)}};
  }

 protected:
  HeadAndAdapterMethod(std::vector<int> blocks, int bottleneck)
      : blocks_(std::move(blocks)), bottleneck_(bottleneck) {}
  std::vector<int> blocks_;
  int bottleneck_;
  std::unique_ptr<peft::PetModule> adapter_;  // attached by Init
};

// Registers `M` under `name`; `M::Create(const MethodConfig&)` parses the options.
template <typename M>
void RegisterMethod(MethodRegistry& registry, absl::string_view name, absl::string_view summary) {
  registry.Register(name, summary, [](const MethodConfig& config) { return M::Create(config); });
}

// InvalidArgument naming the first option, for a method that takes none.
absl::Status RefuseOptions(const MethodConfig& config);

// Registers `M`, a method without knobs (default-constructed; any option refused).
template <typename M>
void RegisterMethodWithoutOptions(MethodRegistry& registry, absl::string_view name,
                                  absl::string_view summary) {
  registry.Register(name, summary,
                    [](const MethodConfig& config) -> absl::StatusOr<std::unique_ptr<Method>> {
                      FEDCL_RETURN_IF_ERROR(RefuseOptions(config));
                      return std::make_unique<M>();
                    });
}

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_METHODS_METHOD_UTIL_H_
