#include "core/fl/client_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/nn/optimizer.h"
#include "core/nn/training.h"
#include "core/peft/class_statistics.h"

namespace fedcl::fl {

ClientModel::ClientModel(std::unique_ptr<nn::Model> model) : model_(std::move(model)) {}

nn::ParameterSet* ClientModel::SetFor(const Installed& installed) {
  switch (installed.spec.role) {
    case ModuleRole::kHead:
      return &model_->head().parameters();
    case ModuleRole::kBackbone:
      return &model_->backbone().parameters();
    case ModuleRole::kPet:
      return &installed.pet->parameters();
    case ModuleRole::kExpert:
    case ModuleRole::kBaseExpert:
    case ModuleRole::kInstancePool:
    case ModuleRole::kClassStatistics:
      return nullptr;  // never installed here (Install refuses them)
  }
  return nullptr;
}

absl::Status ClientModel::Install(const ModuleSpec& spec, int64_t version,
                                  const nn::ParameterSet& values) {
  for (Installed& installed : installed_) {
    if (installed.spec.name != spec.name) continue;
    nn::ParameterSet* target = SetFor(installed);
    FEDCL_RETURN_IF_ERROR(target->CheckSameLayout(values));
    target->flat_values() = values.flat_values();
    installed.version = version;
    return absl::OkStatus();
  }
  if (spec.role == ModuleRole::kExpert || spec.role == ModuleRole::kBaseExpert) {
    return absl::InvalidArgumentError(absl::StrCat(
        "module '", spec.name,
        "' is a mixture expert: the continual learner installs those, not ClientModel"));
  }
  if (spec.role == ModuleRole::kInstancePool) {
    return absl::InvalidArgumentError(absl::StrCat(
        "module '", spec.name,
        "' belongs to a FedIns instance pool: the continual learner runs those, not ClientModel"));
  }
  if (spec.role == ModuleRole::kClassStatistics) {
    return absl::InvalidArgumentError(absl::StrCat(
        "module '", spec.name,
        "' holds class statistics: the continual learner (fed_simple_cil) runs those, not "
        "ClientModel"));
  }
  Installed installed;
  installed.spec = spec;
  installed.version = version;
  if (spec.role == ModuleRole::kPet) {
    FEDCL_ASSIGN_OR_RETURN(installed.pet,
                           peft::PetModule::FromParameters(spec.name, spec.pet, values));
    FEDCL_RETURN_IF_ERROR(installed.pet->Attach(*model_));
  } else {
    nn::ParameterSet* target = SetFor(installed);
    FEDCL_RETURN_IF_ERROR(target->CheckSameLayout(values));
    target->flat_values() = values.flat_values();
  }
  installed_.push_back(std::move(installed));
  return absl::OkStatus();
}

nn::ParameterSet* ClientModel::Find(absl::string_view name) {
  for (const Installed& installed : installed_) {
    if (installed.spec.name == name) return SetFor(installed);
  }
  return nullptr;
}

std::vector<ModuleVersion> ClientModel::held() const {
  std::vector<ModuleVersion> held;
  for (const Installed& installed : installed_)
    held.push_back({installed.spec.name, installed.version});
  return held;
}

int64_t ClientModel::version(absl::string_view name) const {
  for (const Installed& installed : installed_) {
    if (installed.spec.name == name) return installed.version;
  }
  return -1;
}

absl::StatusOr<std::vector<StoredModule>> CreateInitialModules(nn::Model& model,
                                                               const std::vector<ModuleSpec>& specs,
                                                               uint64_t seed) {
  std::vector<StoredModule> modules;
  for (size_t i = 0; i < specs.size(); ++i) {
    StoredModule module;
    module.spec = specs[i];
    switch (module.spec.role) {
      case ModuleRole::kHead:
        module.values = model.head().parameters();
        break;
      case ModuleRole::kBackbone:
        module.values = model.backbone().parameters();
        break;
      case ModuleRole::kPet: {
        base::Rng rng = base::Rng::ForStream(seed, {0x706574, static_cast<uint64_t>(i)});
        FEDCL_ASSIGN_OR_RETURN(auto pet, peft::PetModule::Create(module.spec.name, module.spec.pet,
                                                                 model.backbone(), rng));
        module.values = pet->parameters();
        break;
      }
      case ModuleRole::kBaseExpert:
        return absl::InvalidArgumentError(absl::StrCat(
            "module '", module.spec.name, "': base experts are created by the server's pool"));
      case ModuleRole::kInstancePool:
        return absl::InvalidArgumentError(
            absl::StrCat("module '", module.spec.name,
                         "': instance-pool modules are created by the server's fedins section"));
      case ModuleRole::kExpert:
        return absl::InvalidArgumentError(
            absl::StrCat("module '", module.spec.name,
                         "': expert modules join the pool through ProposeModule, not as initial "
                         "modules"));
      case ModuleRole::kClassStatistics:  // zero sums and counts, one row per head class
        module.values = peft::NewClassStatistics(module.spec.name, model.config().num_classes,
                                                 model.backbone().feature_dim());
        break;
    }
    module.values.SetAllTrainable(true);
    modules.push_back(std::move(module));
  }
  return modules;
}

}  // namespace fedcl::fl
