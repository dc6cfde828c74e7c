#include "core/peft/pet_module.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/peft/site_layout.h"

namespace fedcl::peft {

absl::StatusOr<std::unique_ptr<PetModule>> PetModule::Create(std::string name,
                                                             const PetConfig& config,
                                                             const nn::Backbone& backbone,
                                                             base::Rng& rng) {
  FEDCL_RETURN_IF_ERROR(config.Validate());
  auto params = std::make_unique<nn::ParameterSet>(name);
  std::vector<SiteBinding> sites = internal::CreateTensors(config, backbone, *params, rng);
  if (sites.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "module '", name, "': no ", PetKindName(config.kind), " site of this ",
        nn::BackboneKindName(backbone.kind()), " backbone matches the configured prefixes"));
  }
  return std::unique_ptr<PetModule>(
      new PetModule(std::move(name), config, std::move(params), std::move(sites)));
}

absl::StatusOr<std::unique_ptr<PetModule>> PetModule::FromParameters(std::string name,
                                                                     const PetConfig& config,
                                                                     nn::ParameterSet parameters) {
  FEDCL_RETURN_IF_ERROR(config.Validate());
  auto grouped = internal::GroupTensors(config, parameters);
  if (!grouped.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("module '", name, "': ", grouped.status().message()));
  }
  parameters.set_name(name);
  return std::unique_ptr<PetModule>(new PetModule(
      std::move(name), config, std::make_unique<nn::ParameterSet>(std::move(parameters)),
      *std::move(grouped)));
}

PetModule::PetModule(std::string name, const PetConfig& config,
                     std::unique_ptr<nn::ParameterSet> params, std::vector<SiteBinding> sites)
    : name_(std::move(name)),
      config_(config),
      parameters_(std::move(params)),
      sites_(std::move(sites)) {}

PetModule::~PetModule() { Detach(); }

absl::Status PetModule::Attach(nn::Model& model) {
  if (model_ != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("module '", name_, "' is already attached"));
  }
  absl::Status status = internal::CheckBindable(config_, sites_, *parameters_, model.backbone());
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat("module '", name_, "': ", status.message()));
  }
  internal::Bind(config_, sites_, *parameters_, model.backbone());
  model.RegisterModule(parameters_.get());
  model_ = &model;
  return absl::OkStatus();
}

void PetModule::Detach() {
  if (model_ == nullptr) return;
  internal::Unbind(config_, sites_, model_->backbone());
  model_->UnregisterModule(parameters_.get());
  model_ = nullptr;
}

absl::Status PetModule::MergeInto(nn::Model& model) {
  if (model_ != &model) {
    return absl::FailedPreconditionError(
        absl::StrCat("module '", name_, "' must be attached to the model it merges into"));
  }
  absl::Status status = internal::Merge(config_, sites_, model.backbone());
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat("module '", name_, "': ", status.message()));
  }
  // Merge already unbound every site (SSF) or detached every branch (LoRA).
  model.UnregisterModule(parameters_.get());
  model_ = nullptr;
  return absl::OkStatus();
}

}  // namespace fedcl::peft
