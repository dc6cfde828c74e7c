// What every run of a scenario shares, loaded once: the training and test sets, the pretrained
// backbone, the availability trace and the device profiles; and the model every run starts from.
//
//   FEDCL_ASSIGN_OR_RETURN(sim::Scenario scenario, sim::LoadScenario(fs, path));
//   FEDCL_ASSIGN_OR_RETURN(sim::SimulationInputs inputs, sim::LoadInputs(fs, scenario));
//   FEDCL_ASSIGN_OR_RETURN(auto model, sim::MakeModel(scenario, inputs, /*seed=*/1));
//
// The inputs are read-only once loaded: engines, workers and devices share one instance across
// threads.
#ifndef FEDCL_SIM_WORLD_INPUTS_H_
#define FEDCL_SIM_WORLD_INPUTS_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "core/base/filesystem.h"
#include "core/data/dataset.h"
#include "core/nn/model.h"
#include "sim/world/scenario.h"
#include "sim/world/trace.h"

namespace fedcl::sim {

struct SimulationInputs {
  data::Dataset train;
  data::Dataset test;
  std::unique_ptr<nn::Model> pretrained;  // null: each run initialises the model from its seed
  std::optional<AvailabilityTrace> trace;
  DeviceProfiles profiles{DeviceProfile{}};
};

// Reads the data set (data.dir, capped by max_train_samples / max_test_samples), the checkpoint,
// the trace and the profiles the scenario names. InvalidArgument naming the file for a checkpoint
// of another backbone, a malformed trace or profile; the file system's status for unreadable
// files.
absl::StatusOr<SimulationInputs> LoadInputs(const base::FileSystem& fs, const Scenario& scenario);

// A fresh model as every run and every replica starts: the scenario's model with the data set's
// classes, initialised from `seed`, with the pretrained backbone's values if there is one.
absl::StatusOr<std::unique_ptr<nn::Model>> MakeModel(const Scenario& scenario,
                                                     const SimulationInputs& inputs, uint64_t seed);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_WORLD_INPUTS_H_
