// A model with the server's modules installed by name: what the server and the simulator
// evaluate the global model on, and the initial values of the modules they pool.
//
//   fl::ClientModel replica(std::move(model));              // backbone from a checkpoint
//   FEDCL_RETURN_IF_ERROR(replica.Install(spec, version, downloaded_values));
//   nn::Evaluate(replica.model(), images, labels, 256);
//
// Devices train through core/device (DeviceSession with a cl::Learner; recipe_round.h for the
// federated recipe of algorithms.md §1.4), not here.
//
// Not thread-safe: one ClientModel per thread.
#ifndef FEDCL_CORE_FL_CLIENT_MODEL_H_
#define FEDCL_CORE_FL_CLIENT_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/data/dataset.h"
#include "core/fl/round_types.h"
#include "core/fl/state_store.h"
#include "core/nn/model.h"
#include "core/peft/pet_module.h"

namespace fedcl::fl {

class ClientModel {
 public:
  explicit ClientModel(std::unique_ptr<nn::Model> model);

  // Installs a module's values at `version`: the head's or the backbone's parameters (same layout
  // required), or a PET module created on first sight from spec.pet and attached to the model.
  // InvalidArgument if the values do not fit; nothing changes then.
  absl::Status Install(const ModuleSpec& spec, int64_t version, const nn::ParameterSet& values);

  // The parameters behind a module name, or null if not installed.
  nn::ParameterSet* Find(absl::string_view name);
  // Modules installed and their versions.
  std::vector<ModuleVersion> held() const;
  int64_t version(absl::string_view name) const;

  nn::Model& model() { return *model_; }

 private:
  struct Installed {
    ModuleSpec spec;
    int64_t version = 0;
    std::unique_ptr<peft::PetModule> pet;  // for role kPet
  };
  nn::ParameterSet* SetFor(const Installed& installed);

  std::unique_ptr<nn::Model> model_;
  std::vector<Installed> installed_;  // declared after model_: PET modules detach first
};

// The initial values of the pooled modules over `model`: the head's or backbone's current
// parameters, or a fresh PET module per spec (initialised from `seed` and the module's index).
// Every value is marked trainable. The server and the simulator both start from these.
absl::StatusOr<std::vector<StoredModule>> CreateInitialModules(nn::Model& model,
                                                               const std::vector<ModuleSpec>& specs,
                                                               uint64_t seed);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_CLIENT_MODEL_H_
