#include "core/fl/local_trainer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/nn/optimizer.h"
#include "core/nn/training.h"

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
    }
    module.values.SetAllTrainable(true);
    modules.push_back(std::move(module));
  }
  return modules;
}

absl::StatusOr<LocalUpdate> TrainLocally(ClientModel& replica,
                                         const std::vector<std::string>& module_names,
                                         const Recipe& recipe, const data::Dataset& data,
                                         absl::Span<const int> indices,
                                         const TrainingStream& stream) {
  FEDCL_RETURN_IF_ERROR(recipe.Validate());
  std::vector<int> samples(indices.begin(), indices.end());
  if (samples.empty()) {
    samples.resize(data.size());
    std::iota(samples.begin(), samples.end(), 0);
  }
  if (samples.empty()) return absl::InvalidArgumentError("no local data to train on");
  std::vector<nn::ParameterSet*> sets;
  for (const std::string& name : module_names) {
    nn::ParameterSet* set = replica.Find(name);
    if (set == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("module '", name, "' is not installed"));
    }
    sets.push_back(set);
  }
  // Only the round's modules train; remember the flags to restore them afterwards.
  nn::Model& model = replica.model();
  std::vector<std::pair<nn::ParameterSet*, std::vector<bool>>> saved_flags;
  for (nn::ParameterSet* set : model.parameter_sets()) {
    std::vector<bool> flags;
    for (int t = 0; t < set->num_tensors(); ++t) flags.push_back(set->trainable(t));
    saved_flags.emplace_back(set, std::move(flags));
    set->SetAllTrainable(std::find(sets.begin(), sets.end(), set) != sets.end());
  }
  std::vector<nn::AlignedFloats> start;
  for (nn::ParameterSet* set : sets) {
    start.emplace_back(set->flat_values().data(), set->flat_values().data() + set->num_values());
  }

  base::Rng rng =
      base::Rng::ForStream(stream.seed, {stream.client, static_cast<uint64_t>(stream.round)});
  rng.Shuffle(samples);
  std::unique_ptr<nn::Optimizer> optimizer = nn::MakeOptimizer(recipe);
  const nn::TrainStepOptions step_options{.clip_grad_norm = recipe.clip_grad_norm};
  nn::Matrix images;
  std::vector<int32_t> labels;
  std::vector<int> batch(recipe.batch_size);
  LocalUpdate update;
  double loss_sum = 0.0;
  size_t cursor = 0;
  absl::Status status = absl::OkStatus();
  for (int step = 0; step < recipe.local_steps && status.ok(); ++step) {
    for (int& index : batch) {
      index = samples[cursor];
      cursor = (cursor + 1) % samples.size();
    }
    status = data::GatherBatch(data, batch, &images, &labels);
    if (!status.ok()) break;
    const float loss = nn::TrainStep(model, *optimizer, images, labels, step_options);
    if (!std::isfinite(loss)) {
      status = absl::FailedPreconditionError(
          absl::StrCat("local training diverged at step ", step + 1, " (loss ", loss, ")"));
    }
    loss_sum += loss;
  }
  for (auto& [set, flags] : saved_flags) {
    for (int t = 0; t < set->num_tensors(); ++t) set->set_trainable(t, flags[t]);
  }
  if (!status.ok()) {
    for (size_t i = 0; i < sets.size(); ++i) {  // leave the replica as it was
      std::copy(start[i].begin(), start[i].end(), sets[i]->flat_values().data());
    }
    return status;
  }
  for (size_t i = 0; i < sets.size(); ++i) {
    ModuleUpdate module;
    module.name = module_names[i];
    module.base_version = replica.version(module_names[i]);
    for (const nn::TensorInfo& info : sets[i]->tensors())
      module.layout.push_back({info.name, info.shape});
    module.values.resize(sets[i]->num_values());
    const float* now = sets[i]->flat_values().data();
    for (size_t k = 0; k < module.values.size(); ++k) module.values[k] = now[k] - start[i][k];
    // The replica goes back to the published values: the server decides the next ones.
    std::copy(start[i].begin(), start[i].end(), sets[i]->flat_values().data());
    update.modules.push_back(std::move(module));
  }
  update.local_steps = recipe.local_steps;
  update.num_samples = int64_t{recipe.local_steps} * recipe.batch_size;
  update.loss = loss_sum / recipe.local_steps;
  return update;
}

}  // namespace fedcl::fl
