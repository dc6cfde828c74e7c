// A parameter-efficient module: a small ParameterSet bound to a frozen backbone's extension
// points. It is what devices train and the server aggregates, one module at a time.
//
//   peft::PetConfig config{.kind = peft::PetKind::kSsf};
//   FEDCL_ASSIGN_OR_RETURN(auto ssf, peft::PetModule::Create("ssf", config, model->backbone(),
//   rng)); FEDCL_RETURN_IF_ERROR(ssf->Attach(*model));    // now trained along with the head
//   ... train ...
//   nn::ParameterSet shipped = ssf->parameters();  // extract: a standalone copy
//   // elsewhere: rebuild from what was shipped and re-attach
//   FEDCL_ASSIGN_OR_RETURN(auto copy, peft::PetModule::FromParameters("ssf", config, shipped));
//   FEDCL_RETURN_IF_ERROR(copy->Attach(*other_model));
//   FEDCL_RETURN_IF_ERROR(copy->MergeInto(*other_model));  // fold SSF into the backbone
//
// Tensor names are "<site>.<role>": SSF "<site>.ssf_scale" / ".ssf_shift" ([C] each); adapter
// "<site>.down.weight" [r, d], ".down.bias" [r], ".up.weight" [d, r], ".up.bias" [d]; LoRA
// "<linear>.lora_a" [r, in], ".lora_b" [out, r]. Site names are the backbone's (backbone.h).
//
// A module attaches to at most one model at a time; it detaches itself when destroyed, so a model
// never points at freed parameters. The model must outlive the attachment. Not thread-safe.
#ifndef FEDCL_CORE_PEFT_PET_MODULE_H_
#define FEDCL_CORE_PEFT_PET_MODULE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/random.h"
#include "core/nn/model.h"
#include "core/nn/parameter_set.h"
#include "core/peft/pet_config.h"

namespace fedcl::peft {

class PetModule {
 public:
  // A fresh module over every site of `backbone` that `config` covers, initialised as its
  // reference does (SSF: γ ~ N(1, 0.02²), β ~ N(0, 0.02²); adapter: down Kaiming-uniform, up and
  // biases zero; LoRA: A Kaiming-uniform, B zero). InvalidArgument for a bad config or one that
  // covers no site of this backbone.
  static absl::StatusOr<std::unique_ptr<PetModule>> Create(std::string name,
                                                           const PetConfig& config,
                                                           const nn::Backbone& backbone,
                                                           base::Rng& rng);

  // Rebuilds a module from a shipped ParameterSet. Checks that the tensor names follow the
  // module kind's scheme, that every site has all its tensors and that ranks/bottlenecks agree;
  // whether the sites exist on a given backbone is checked by Attach.
  static absl::StatusOr<std::unique_ptr<PetModule>> FromParameters(std::string name,
                                                                   const PetConfig& config,
                                                                   nn::ParameterSet parameters);

  ~PetModule();
  PetModule(const PetModule&) = delete;
  PetModule& operator=(const PetModule&) = delete;

  // Binds every tensor to its site on `model`'s backbone and registers the parameters with the
  // model. All or nothing: InvalidArgument if a tensor names no site of this backbone or has the
  // wrong shape; FailedPrecondition if a site is already taken by another module or this module
  // is attached elsewhere.
  absl::Status Attach(nn::Model& model);
  // Unbinds and unregisters. No-op if not attached.
  void Detach();
  bool attached() const { return model_ != nullptr; }

  // Folds the module into the backbone's weights (SSF: §2.5; LoRA: W ← W + (α/r)·B·A) and
  // detaches it; the model computes the same function with no extra cost. The module must be
  // attached to `model`. FailedPrecondition for adapters (a nonlinear branch cannot be folded)
  // and for an SSF site whose preceding Linear still carries a LoRA branch (merge that first).
  absl::Status MergeInto(nn::Model& model);

  const std::string& name() const { return name_; }
  const PetConfig& config() const { return config_; }
  nn::ParameterSet& parameters() { return *parameters_; }
  const nn::ParameterSet& parameters() const { return *parameters_; }

  // Internal: one resolved site and the indices of its tensors in parameters().
  struct SiteBinding {
    std::string site;
    int tensors[4] = {-1, -1, -1, -1};
  };

 private:
  PetModule(std::string name, const PetConfig& config, std::unique_ptr<nn::ParameterSet> params,
            std::vector<SiteBinding> sites);

  std::string name_;
  PetConfig config_;
  // Heap-allocated so the address that sites and the model hold stays fixed.
  std::unique_ptr<nn::ParameterSet> parameters_;
  std::vector<SiteBinding> sites_;
  nn::Model* model_ = nullptr;
};

}  // namespace fedcl::peft

#endif  // FEDCL_CORE_PEFT_PET_MODULE_H_
