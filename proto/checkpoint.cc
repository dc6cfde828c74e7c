#include "proto/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "proto/envelope.h"
#include "proto/tensor_convert.h"

namespace fedcl::proto {
namespace {

// `status` with `prefix` in front of its message and code `code`.
absl::Status Annotate(absl::StatusCode code, absl::string_view prefix, const absl::Status& status) {
  return absl::Status(code, absl::StrCat(prefix, ": ", status.message()));
}

absl::Status Invalid(absl::string_view prefix, const absl::Status& status) {
  return Annotate(absl::StatusCode::kInvalidArgument, prefix, status);
}

absl::Status CheckMetadata(const CheckpointMetadata& metadata) {
  absl::flat_hash_set<int> seen;
  for (int c : metadata.classes) {
    if (c < 0) return absl::InvalidArgumentError(absl::StrCat("metadata: class ", c, " < 0"));
    if (!seen.insert(c).second) {
      return absl::InvalidArgumentError(absl::StrCat("metadata: class ", c, " is repeated"));
    }
  }
  if (metadata.epochs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata: epochs must be >= 0, got ", metadata.epochs));
  }
  if (metadata.test_accuracy.has_value() &&
      !(*metadata.test_accuracy >= 0.0 && *metadata.test_accuracy <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata: test_accuracy must be in [0, 1], got ", *metadata.test_accuracy));
  }
  return absl::OkStatus();
}

// InvalidArgument naming the first NaN or infinite value of `set`.
absl::Status CheckFinite(const nn::ParameterSet& set) {
  for (int t = 0; t < set.num_tensors(); ++t) {
    const float* values = set.values(t);
    for (int64_t i = 0; i < set.info(t).size; ++i) {
      if (!std::isfinite(values[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", set.info(t).name, "' of parameter set '", set.name(), "': element ", i,
            " is not finite (", values[i], "); a checkpoint holding it could not be loaded"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckModules(const std::vector<const peft::PetModule*>& modules) {
  absl::flat_hash_set<absl::string_view> names;
  for (size_t i = 0; i < modules.size(); ++i) {
    if (modules[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("module ", i, " is null"));
    }
    const std::string& name = modules[i]->name();
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("module ", i, " has no name"));
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("module ", i, ": the name '", name, "' is used by an earlier module"));
    }
    FEDCL_RETURN_IF_ERROR(CheckFinite(modules[i]->parameters()));
  }
  return absl::OkStatus();
}

// "[3, 4]" for a message's shape.
std::string ShapeString(const v1::Tensor& tensor) {
  return absl::StrCat("[", absl::StrJoin(tensor.shape(), ", "), "]");
}

// OK if `message` has exactly the tensors of `set` (names and shapes, in order); otherwise
// InvalidArgument describing the first difference. Values are checked by CopyValuesFromProto.
absl::Status CheckLayout(const v1::ParameterSet& message, const nn::ParameterSet& set) {
  if (message.tensors_size() != set.num_tensors()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "it stores ", message.tensors_size(), " tensors, the config builds ", set.num_tensors()));
  }
  for (int i = 0; i < set.num_tensors(); ++i) {
    const v1::Tensor& tensor = message.tensors(i);
    const nn::TensorInfo& info = set.info(i);
    if (tensor.name() != info.name) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, " is '", tensor.name(),
                                                     "', the config builds '", info.name, "'"));
    }
    if (!std::equal(tensor.shape().begin(), tensor.shape().end(), info.shape.begin(),
                    info.shape.end())) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", info.name, "' has shape ",
                                                     ShapeString(tensor), ", the config builds ",
                                                     nn::ShapeToString(info.shape)));
    }
  }
  return absl::OkStatus();
}

// Copies the stored values of one part of the model ("backbone" or "head") into `set` and sets
// its trainable flags as stored. `what` names the checkpoint.
absl::Status RestorePart(const v1::ParameterSet& message, absl::string_view part,
                         const nn::ModelConfig& config, absl::string_view what,
                         nn::ParameterSet& set) {
  absl::Status layout = CheckLayout(message, set);
  if (!layout.ok()) {
    return Invalid(
        absl::StrCat(what, ": the checkpoint's ", part, " does not match its config (",
                     nn::BackboneKindName(config.backbone), " backbone, ",
                     nn::HeadKindName(config.head), " head, ", config.num_classes, " classes)"),
        layout);
  }
  absl::Status copied = CopyValuesFromProto(message, &set);
  if (!copied.ok()) return Invalid(what, copied);
  for (int i = 0; i < set.num_tensors(); ++i) set.set_trainable(i, message.tensors(i).trainable());
  return absl::OkStatus();
}

// A lower bound on the floats in the backbone and head a model of `config` builds: their
// largest weight matrices alone (no biases, norms, embeddings or convolutions). A checkpoint
// that stores fewer cannot match its config and is refused before the model is built, so a few
// bytes of config (a ViT of width 65536 and depth 256 is valid) cannot allocate terabytes.
// Counted in double: the product of valid sizes can pass int64.
double MinimumModelValues(const nn::ModelConfig& config) {
  const double pixels =
      static_cast<double>(config.image_channels) * config.image_height * config.image_width;
  double values = 0.0;
  double features = 0.0;
  switch (config.backbone) {
    case nn::BackboneKind::kMlp:
      features = pixels;
      for (int width : config.mlp.hidden) {
        values += features * width;
        features = width;
      }
      break;
    case nn::BackboneKind::kCnn:
      values = static_cast<double>(config.image_height / 4) * (config.image_width / 4) *
               config.cnn.conv2_channels * config.cnn.hidden;
      features = config.cnn.hidden;
      break;
    case nn::BackboneKind::kVit: {
      const double dim = config.vit.dim;
      values = config.vit.depth * (4.0 + 2.0 * config.vit.mlp_ratio) * dim * dim;
      features = dim;
      break;
    }
  }
  return values + features * config.num_classes;
}

double StoredValues(const v1::ParameterSet& set) {
  double values = 0.0;
  for (const v1::Tensor& tensor : set.tensors()) values += tensor.data().size() / 4.0;
  return values;
}

// Rebuilds module `index` and attaches it to `model`.
absl::StatusOr<std::unique_ptr<peft::PetModule>> RestoreModule(const v1::PetModule& message,
                                                               int index, absl::string_view what,
                                                               nn::Model& model) {
  std::string where = absl::StrCat(what, ": module ", index, " '", message.name(), "'");
  if (message.name().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": the name is empty"));
  }
  absl::StatusOr<peft::PetConfig> config = FromProto(message.config());
  if (!config.ok()) return Invalid(where, config.status());
  absl::StatusOr<nn::ParameterSet> parameters = FromProto(message.parameters());
  if (!parameters.ok()) return Invalid(where, parameters.status());
  absl::StatusOr<std::unique_ptr<peft::PetModule>> module =
      peft::PetModule::FromParameters(message.name(), *config, *std::move(parameters));
  // These two errors already name the module.
  if (!module.ok()) return Invalid(what, module.status());
  absl::Status attached = (*module)->Attach(model);
  if (!attached.ok()) return Invalid(what, attached);
  return module;
}

}  // namespace

void ToProto(const nn::ModelConfig& config, v1::ModelConfig* message) {
  message->Clear();
  message->set_backbone(std::string(nn::BackboneKindName(config.backbone)));
  message->mutable_mlp()->mutable_hidden()->Add(config.mlp.hidden.begin(), config.mlp.hidden.end());
  v1::CnnConfig* cnn = message->mutable_cnn();
  cnn->set_conv1_channels(config.cnn.conv1_channels);
  cnn->set_conv2_channels(config.cnn.conv2_channels);
  cnn->set_hidden(config.cnn.hidden);
  v1::VitConfig* vit = message->mutable_vit();
  vit->set_patch(config.vit.patch);
  vit->set_dim(config.vit.dim);
  vit->set_depth(config.vit.depth);
  vit->set_heads(config.vit.heads);
  vit->set_mlp_ratio(config.vit.mlp_ratio);
  message->set_image_channels(config.image_channels);
  message->set_image_height(config.image_height);
  message->set_image_width(config.image_width);
  message->set_head(std::string(nn::HeadKindName(config.head)));
  message->set_num_classes(config.num_classes);
}

absl::StatusOr<nn::ModelConfig> FromProto(const v1::ModelConfig& message) {
  nn::ModelConfig config;
  absl::StatusOr<nn::BackboneKind> backbone = nn::ParseBackboneKind(message.backbone());
  if (!backbone.ok()) return Invalid("model config", backbone.status());
  config.backbone = *backbone;
  absl::StatusOr<nn::HeadKind> head = nn::ParseHeadKind(message.head());
  if (!head.ok()) return Invalid("model config", head.status());
  config.head = *head;
  config.mlp.hidden.assign(message.mlp().hidden().begin(), message.mlp().hidden().end());
  config.cnn.conv1_channels = message.cnn().conv1_channels();
  config.cnn.conv2_channels = message.cnn().conv2_channels();
  config.cnn.hidden = message.cnn().hidden();
  config.vit.patch = message.vit().patch();
  config.vit.dim = message.vit().dim();
  config.vit.depth = message.vit().depth();
  config.vit.heads = message.vit().heads();
  config.vit.mlp_ratio = message.vit().mlp_ratio();
  config.image_channels = message.image_channels();
  config.image_height = message.image_height();
  config.image_width = message.image_width();
  config.num_classes = message.num_classes();
  FEDCL_RETURN_IF_ERROR(config.Validate());  // messages start "model config: <field>"
  return config;
}

void ToProto(const peft::PetConfig& config, v1::PetConfig* message) {
  message->Clear();
  message->set_kind(std::string(peft::PetKindName(config.kind)));
  for (const std::string& prefix : config.site_prefixes) message->add_site_prefixes(prefix);
  message->set_ssf_init_stddev(config.ssf_init_stddev);
  message->set_adapter_bottleneck(config.adapter_bottleneck);
  message->set_lora_rank(config.lora_rank);
  message->set_lora_alpha(config.lora_alpha);
}

absl::StatusOr<peft::PetConfig> FromProto(const v1::PetConfig& message) {
  peft::PetConfig config;
  absl::StatusOr<peft::PetKind> kind = peft::ParsePetKind(message.kind());
  if (!kind.ok()) return Invalid("PET config", kind.status());
  config.kind = *kind;
  config.site_prefixes.assign(message.site_prefixes().begin(), message.site_prefixes().end());
  // proto3 cannot tell an unset number from 0, and 0 is never a valid bottleneck, rank or
  // alpha: a 0 keeps PetConfig's default, so configs name only what they change. (An SSF init
  // spread of exactly 0 therefore reads back as the default; it only matters at creation.)
  if (message.ssf_init_stddev() != 0) config.ssf_init_stddev = message.ssf_init_stddev();
  if (message.adapter_bottleneck() != 0) config.adapter_bottleneck = message.adapter_bottleneck();
  if (message.lora_rank() != 0) config.lora_rank = message.lora_rank();
  if (message.lora_alpha() != 0) config.lora_alpha = message.lora_alpha();
  FEDCL_RETURN_IF_ERROR(config.Validate());  // messages start "PET config: <field>"
  return config;
}

void ToProto(const CheckpointMetadata& metadata, v1::CheckpointMetadata* message) {
  message->Clear();
  message->mutable_classes()->Add(metadata.classes.begin(), metadata.classes.end());
  message->set_epochs(metadata.epochs);
  if (metadata.test_accuracy.has_value()) message->set_test_accuracy(*metadata.test_accuracy);
  message->set_created_by(metadata.created_by);
  for (const auto& [key, value] : metadata.extra) (*message->mutable_extra())[key] = value;
}

absl::StatusOr<CheckpointMetadata> FromProto(const v1::CheckpointMetadata& message) {
  CheckpointMetadata metadata;
  metadata.classes.assign(message.classes().begin(), message.classes().end());
  metadata.epochs = message.epochs();
  if (message.has_test_accuracy()) metadata.test_accuracy = message.test_accuracy();
  metadata.created_by = message.created_by();
  metadata.extra.insert(message.extra().begin(), message.extra().end());
  FEDCL_RETURN_IF_ERROR(CheckMetadata(metadata));
  return metadata;
}

absl::Status ToCheckpointProto(const nn::Model& model,
                               const std::vector<const peft::PetModule*>& modules,
                               const CheckpointMetadata& metadata, v1::ModelCheckpoint* message) {
  message->Clear();
  FEDCL_RETURN_IF_ERROR(CheckMetadata(metadata));
  FEDCL_RETURN_IF_ERROR(CheckFinite(model.backbone().parameters()));
  FEDCL_RETURN_IF_ERROR(CheckFinite(model.head().parameters()));
  FEDCL_RETURN_IF_ERROR(CheckModules(modules));
  message->set_format_version(kCheckpointFormatVersion);
  ToProto(model.config(), message->mutable_config());
  ToProto(model.backbone().parameters(), message->mutable_backbone());
  ToProto(model.head().parameters(), message->mutable_head());
  for (const peft::PetModule* module : modules) {
    v1::PetModule* stored = message->add_modules();
    stored->set_name(module->name());
    ToProto(module->config(), stored->mutable_config());
    ToProto(module->parameters(), stored->mutable_parameters());
  }
  ToProto(metadata, message->mutable_metadata());
  return absl::OkStatus();
}

absl::Status SaveCheckpoint(base::FileSystem& fs, absl::string_view path, const nn::Model& model,
                            const std::vector<const peft::PetModule*>& modules,
                            const CheckpointMetadata& metadata) {
  v1::ModelCheckpoint message;
  absl::Status built = ToCheckpointProto(model, modules, metadata, &message);
  if (!built.ok()) {
    return Invalid(absl::StrCat("cannot write checkpoint '", path, "'"), built);
  }
  return WriteEnvelope(fs, path, PayloadKind::kModelCheckpoint, message);
}

absl::StatusOr<LoadedCheckpoint> FromCheckpointProto(const v1::ModelCheckpoint& message,
                                                     absl::string_view source_name) {
  const std::string what = absl::StrCat("checkpoint '", source_name, "'");
  const uint32_t version = message.format_version();
  if (version == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has no format_version (0): it was not written by SaveCheckpoint"));
  }
  if (version > kCheckpointFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " has checkpoint format version ", version, " but this build reads versions up to ",
        kCheckpointFormatVersion, " (it was written by a newer fedcl)"));
  }
  absl::StatusOr<nn::ModelConfig> config = FromProto(message.config());
  if (!config.ok()) return Invalid(what, config.status());
  absl::StatusOr<CheckpointMetadata> metadata = FromProto(message.metadata());
  if (!metadata.ok()) return Invalid(what, metadata.status());

  const double stored = StoredValues(message.backbone()) + StoredValues(message.head());
  if (stored < MinimumModelValues(*config)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": its backbone does not match its config (", nn::BackboneKindName(config->backbone),
        "): the config needs at least ", MinimumModelValues(*config),
        " backbone and head values, the checkpoint stores ", stored));
  }
  // Any seed: every value is overwritten below.
  LoadedCheckpoint loaded;
  FEDCL_ASSIGN_OR_RETURN(loaded.model, nn::Model::Create(*config, /*seed=*/0));
  FEDCL_RETURN_IF_ERROR(RestorePart(message.backbone(), "backbone", *config, what,
                                    loaded.model->backbone().parameters()));
  FEDCL_RETURN_IF_ERROR(
      RestorePart(message.head(), "head", *config, what, loaded.model->head().parameters()));
  absl::flat_hash_set<absl::string_view> names;
  for (int i = 0; i < message.modules_size(); ++i) {
    const v1::PetModule& stored = message.modules(i);
    if (!names.insert(stored.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": module ", i, " '", stored.name(),
                                                     "' repeats the name of an earlier module"));
    }
    // On error `loaded` is destroyed: modules detach first, then the model goes.
    FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<peft::PetModule> module,
                           RestoreModule(stored, i, what, *loaded.model));
    loaded.modules.push_back(std::move(module));
  }
  loaded.metadata = *std::move(metadata);
  return loaded;
}

absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const base::FileSystem& fs, absl::string_view path,
                                                uint64_t max_bytes) {
  v1::ModelCheckpoint message;
  FEDCL_RETURN_IF_ERROR(ReadEnvelope(fs, path, PayloadKind::kModelCheckpoint, &message, max_bytes));
  return FromCheckpointProto(message, path);
}

}  // namespace fedcl::proto
