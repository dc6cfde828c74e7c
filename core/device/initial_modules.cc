#include "core/device/initial_modules.h"

namespace fedcl::device {

std::vector<fl::StoredModule> InitialModules(cl::Learner& learner) {
  const std::vector<nn::ParameterSet*> sets = learner.SharedModules();
  const std::vector<peft::ModuleSpec> specs = learner.SharedModuleSpecs();
  std::vector<fl::StoredModule> modules;
  for (size_t i = 0; i < sets.size() && i < specs.size(); ++i) {
    if (specs[i].role == peft::ModuleRole::kExpert) continue;
    fl::StoredModule module;
    module.spec = specs[i];
    module.values = *sets[i];
    module.values.DropGradients();
    module.values.SetAllTrainable(true);
    modules.push_back(std::move(module));
  }
  return modules;
}

}  // namespace fedcl::device
