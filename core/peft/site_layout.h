// Internal to peft: how each PET kind lays out its tensors at a site, and how it binds them.
#ifndef FEDCL_CORE_PEFT_SITE_LAYOUT_H_
#define FEDCL_CORE_PEFT_SITE_LAYOUT_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/random.h"
#include "core/nn/backbone.h"
#include "core/peft/pet_config.h"
#include "core/peft/pet_module.h"

namespace fedcl::peft::internal {

// Adds and initialises the tensors for every covered site; returns the sites in forward order.
std::vector<PetModule::SiteBinding> CreateTensors(const PetConfig& config,
                                                  const nn::Backbone& backbone,
                                                  nn::ParameterSet& params, base::Rng& rng);

// Groups the tensors of a shipped set by site and checks names and internal consistency.
absl::StatusOr<std::vector<PetModule::SiteBinding>> GroupTensors(const PetConfig& config,
                                                                 const nn::ParameterSet& params);

// Checks that every site exists on `backbone`, is free and fits the tensors' shapes.
absl::Status CheckBindable(const PetConfig& config,
                           const std::vector<PetModule::SiteBinding>& sites,
                           nn::ParameterSet& params, const nn::Backbone& backbone);

// Binds (CheckBindable must have passed) or unbinds every site.
void Bind(const PetConfig& config, const std::vector<PetModule::SiteBinding>& sites,
          nn::ParameterSet& params, nn::Backbone& backbone);
void Unbind(const PetConfig& config, const std::vector<PetModule::SiteBinding>& sites,
            nn::Backbone& backbone);

// Folds bound sites into the backbone and unbinds them; see PetModule::MergeInto.
absl::Status Merge(const PetConfig& config, const std::vector<PetModule::SiteBinding>& sites,
                   nn::Backbone& backbone);

}  // namespace fedcl::peft::internal

#endif  // FEDCL_CORE_PEFT_SITE_LAYOUT_H_
