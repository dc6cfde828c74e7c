#include "sim/world/inputs.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "proto/checkpoint.h"

namespace fedcl::sim {
namespace {

absl::Status LoadPretrained(const base::FileSystem& fs, const Scenario& scenario,
                            SimulationInputs& inputs) {
  FEDCL_ASSIGN_OR_RETURN(
      proto::LoadedCheckpoint loaded,
      proto::LoadCheckpoint(fs, scenario.checkpoint_path, proto::kDefaultMaxCheckpointBytes));
  if (loaded.model->config().backbone != scenario.model.backbone) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint '", scenario.checkpoint_path, "' holds a ",
        nn::BackboneKindName(loaded.model->config().backbone), " backbone, the scenario asks for ",
        nn::BackboneKindName(scenario.model.backbone)));
  }
  loaded.modules.clear();
  inputs.pretrained = std::move(loaded.model);
  return absl::OkStatus();
}

absl::Status LoadTraceAndProfiles(const base::FileSystem& fs, const Scenario& scenario,
                                  SimulationInputs& inputs) {
  if (!scenario.trace_path.empty()) {
    FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(scenario.trace_path, 1 << 30));
    absl::StatusOr<AvailabilityTrace> trace = AvailabilityTrace::Parse(text);
    if (!trace.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trace '", scenario.trace_path, "': ", trace.status().message()));
    }
    inputs.trace = std::move(*trace);
  }
  const v1::DeviceConfig& dev = scenario.config.devices();
  const DeviceProfile fallback{dev.default_ms_per_sample(), dev.default_bandwidth_kbps()};
  inputs.profiles = DeviceProfiles(fallback);
  if (!scenario.profile_path.empty()) {
    FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(scenario.profile_path, 1 << 30));
    absl::StatusOr<DeviceProfiles> profiles = DeviceProfiles::Parse(text, fallback);
    if (!profiles.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("device profiles '", scenario.profile_path,
                                                     "': ", profiles.status().message()));
    }
    inputs.profiles = std::move(*profiles);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SimulationInputs> LoadInputs(const base::FileSystem& fs, const Scenario& scenario) {
  SimulationInputs inputs;
  const v1::SimDataConfig& d = scenario.config.data();
  data::FashionMnistOptions options;
  options.directory = d.dir();
  options.max_samples = d.max_train_samples();
  FEDCL_ASSIGN_OR_RETURN(inputs.train, data::LoadFashionMnist(fs, options, data::Split::kTrain));
  options.max_samples = d.max_test_samples();
  FEDCL_ASSIGN_OR_RETURN(inputs.test, data::LoadFashionMnist(fs, options, data::Split::kTest));
  if (!scenario.checkpoint_path.empty())
    FEDCL_RETURN_IF_ERROR(LoadPretrained(fs, scenario, inputs));
  FEDCL_RETURN_IF_ERROR(LoadTraceAndProfiles(fs, scenario, inputs));
  return inputs;
}

absl::StatusOr<std::unique_ptr<nn::Model>> MakeModel(const Scenario& scenario,
                                                     const SimulationInputs& inputs,
                                                     uint64_t seed) {
  nn::ModelConfig config = scenario.model;
  config.num_classes = inputs.train.num_classes;
  FEDCL_ASSIGN_OR_RETURN(auto model, nn::Model::Create(config, seed));
  if (inputs.pretrained != nullptr) {
    model->backbone().parameters().flat_values() =
        inputs.pretrained->backbone().parameters().flat_values();
  }
  return model;
}

}  // namespace fedcl::sim
