#include "sim/world/inputs.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "core/data/npy.h"
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

// The scenario's own .npy train and test sets (data.train_images and the rest).
absl::Status LoadNpyData(const base::FileSystem& fs, const v1::SimDataConfig& d,
                         SimulationInputs& inputs) {
  data::NpyImageOptions options;
  options.num_classes = d.num_classes() > 0 ? d.num_classes() : 10;
  options.channels_last = !d.channels_first();
  options.max_samples = d.max_train_samples();
  FEDCL_ASSIGN_OR_RETURN(
      inputs.train, data::LoadNpyImageDataset(fs, d.train_images(), d.train_labels(), options));
  options.max_samples = d.max_test_samples();
  FEDCL_ASSIGN_OR_RETURN(inputs.test,
                         data::LoadNpyImageDataset(fs, d.test_images(), d.test_labels(), options));
  if (inputs.test.channels != inputs.train.channels || inputs.test.height != inputs.train.height ||
      inputs.test.width != inputs.train.width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data: the test images (", inputs.test.channels, "x", inputs.test.height, "x",
        inputs.test.width, ") are not the size of the training images (", inputs.train.channels,
        "x", inputs.train.height, "x", inputs.train.width, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SimulationInputs> LoadInputs(const base::FileSystem& fs, const Scenario& scenario) {
  SimulationInputs inputs;
  const v1::SimDataConfig& d = scenario.config.data();
  if (!d.train_images().empty()) {
    FEDCL_RETURN_IF_ERROR(LoadNpyData(fs, d, inputs));
  } else {
    data::FashionMnistOptions options;
    options.directory = d.dir();
    options.max_samples = d.max_train_samples();
    FEDCL_ASSIGN_OR_RETURN(inputs.train, data::LoadFashionMnist(fs, options, data::Split::kTrain));
    options.max_samples = d.max_test_samples();
    FEDCL_ASSIGN_OR_RETURN(inputs.test, data::LoadFashionMnist(fs, options, data::Split::kTest));
  }
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
  // The images decide the input size (28x28x1 for Fashion-MNIST, anything for .npy data).
  config.image_channels = inputs.train.channels;
  config.image_height = inputs.train.height;
  config.image_width = inputs.train.width;
  FEDCL_ASSIGN_OR_RETURN(auto model, nn::Model::Create(config, seed));
  if (inputs.pretrained != nullptr) {
    if (inputs.pretrained->backbone().parameters().num_values() !=
        model->backbone().parameters().num_values()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the checkpoint's backbone (", inputs.pretrained->backbone().parameters().num_values(),
          " values) does not fit the scenario's model for ", config.image_channels, "x",
          config.image_height, "x", config.image_width, " images (",
          model->backbone().parameters().num_values(), " values)"));
    }
    model->backbone().parameters().flat_values() =
        inputs.pretrained->backbone().parameters().flat_values();
  }
  return model;
}

}  // namespace fedcl::sim
