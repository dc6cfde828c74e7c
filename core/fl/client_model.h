// The device side of a round: a replica of the model with the server's modules installed by name,
// and local training that turns a recipe and local data into one delta per module.
//
//   fl::ClientModel replica(std::move(model));              // backbone from a checkpoint
//   FEDCL_RETURN_IF_ERROR(replica.Install(spec, version, downloaded_values));
//   FEDCL_ASSIGN_OR_RETURN(fl::LocalUpdate update,
//                          fl::TrainLocally(replica, round_modules, recipe, data, indices,
//                                           {.seed = 1, .client = 7, .round = 12}));
//
// Training follows algorithms.md §1.4: start from the modules' current values, run the recipe's
// steps with a fresh optimizer, and report Δ = y − x per module. Only the round's modules train;
// the backbone stays frozen unless it is itself a module (role "backbone"). Minibatches come from
// a random stream keyed by (seed, client, round), so a client's update does not depend on how
// clients are scheduled, sharded across processes or threaded.
//
// Not thread-safe: one ClientModel per thread.
#ifndef FEDCL_CORE_FL_LOCAL_TRAINER_H_
#define FEDCL_CORE_FL_LOCAL_TRAINER_H_

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

struct TrainingStream {
  uint64_t seed = 0;
  ClientId client = 0;
  int64_t round = 0;
};

// Trains the named modules (all installed) on `data` restricted to `indices` (the device's
// samples; all of `data` if empty). InvalidArgument for an unknown module or no data;
// FailedPrecondition if the loss diverges (not finite).
absl::StatusOr<LocalUpdate> TrainLocally(ClientModel& replica,
                                         const std::vector<std::string>& module_names,
                                         const Recipe& recipe, const data::Dataset& data,
                                         absl::Span<const int> indices,
                                         const TrainingStream& stream);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_LOCAL_TRAINER_H_
