// Model checkpoints: a model's config and weights, its attached PET modules and how it was
// trained, in one checksummed file (fedcl.v1.ModelCheckpoint inside a file envelope).
//
//   proto::CheckpointMetadata metadata;
//   metadata.classes = {0, 1, 2};
//   metadata.epochs = 5;
//   metadata.test_accuracy = 0.91;
//   metadata.created_by = "fedcl-pretrain 0.1.0";
//   FEDCL_RETURN_IF_ERROR(
//       proto::SaveCheckpoint(fs, "/state/vit.ckpt", *model, {ssf.get()}, metadata));
//   ...
//   FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint loaded,
//                          proto::LoadCheckpoint(fs, "/state/vit.ckpt",
//                                                proto::kDefaultMaxCheckpointBytes));
//   loaded.model->Forward(images, /*training=*/false);   // modules already attached
//
// What is stored: the config, every backbone and head tensor with its trainable flag, and each
// module's name, PetConfig and tensors (with flags). Gradients and optimizer state are not.
// Values are restored bit for bit, so a loaded model computes what the saved one did.
//
// Loading treats the file as untrusted: it checks the envelope (length, checksums, payload kind),
// the format version, the config (as nn::ModelConfig::Validate does), that the stored tensors
// have exactly the layout the config builds, that every value is finite, and that every module
// rebuilds and attaches. It is all or nothing: on any error it returns a status and no model.
//
// Also here: conversion of nn::ModelConfig and peft::PetConfig to and from their messages, which
// the wire protocol reuses. All functions are thread-safe on distinct outputs.
#ifndef FEDCL_PROTO_CHECKPOINT_H_
#define FEDCL_PROTO_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/nn/model.h"
#include "core/nn/model_config.h"
#include "core/peft/pet_config.h"
#include "core/peft/pet_module.h"
#include "proto/fedcl/v1/checkpoint.pb.h"

namespace fedcl::proto {

// The ModelCheckpoint layout this build writes, and the newest it reads.
inline constexpr uint32_t kCheckpointFormatVersion = 1;

// A generous read limit for LoadCheckpoint: the default ViT is ~0.2 M floats (under 1 MB).
inline constexpr uint64_t kDefaultMaxCheckpointBytes = uint64_t{1} << 30;

// How the weights came to be (fedcl.v1.CheckpointMetadata). Nothing here affects the model.
struct CheckpointMetadata {
  // Original class ids the head was trained on: head output i is class classes[i]. Each >= 0,
  // no repeats; empty if unknown.
  std::vector<int> classes;
  // Training epochs that produced the weights, >= 0.
  int epochs = 0;
  // Top-1 test accuracy in [0, 1], if evaluated.
  std::optional<double> test_accuracy;
  // Free-form description of the writer, e.g. "fedcl-pretrain 0.1.0 --model=vit --epochs=5".
  std::string created_by;
  // Anything else, e.g. {"seed", "1"}.
  std::map<std::string, std::string> extra;
};

// ---- Config conversion ------------------------------------------------------------------------

// Replaces `*message` with `config` (all three backbone sub-configs, as the struct holds them).
// `message` must not be null.
void ToProto(const nn::ModelConfig& config, v1::ModelConfig* message);

// The config `message` describes. InvalidArgument for an unknown backbone or head string, or a
// config that fails nn::ModelConfig::Validate; the message names the field, e.g.
// "model config: unknown backbone 'resnet' (expected mlp, cnn or vit)".
absl::StatusOr<nn::ModelConfig> FromProto(const v1::ModelConfig& message);

// Replaces `*message` with `config`. `message` must not be null.
void ToProto(const peft::PetConfig& config, v1::PetConfig* message);

// The config `message` describes; numeric fields left at 0 take PetConfig's defaults (proto3
// cannot tell unset from 0, and 0 is never valid for them). InvalidArgument for an unknown kind
// string or a config that fails peft::PetConfig::Validate, naming the field.
absl::StatusOr<peft::PetConfig> FromProto(const v1::PetConfig& message);

// Replaces `*message` with `metadata`. `message` must not be null.
void ToProto(const CheckpointMetadata& metadata, v1::CheckpointMetadata* message);

// InvalidArgument for a negative or repeated class, negative epochs, or a test accuracy outside
// [0, 1] (NaN included).
absl::StatusOr<CheckpointMetadata> FromProto(const v1::CheckpointMetadata& message);

// ---- Checkpoint files -------------------------------------------------------------------------

// Builds the ModelCheckpoint message for `model` with `modules` (in that order) and `metadata`.
// `modules` are normally the ones attached to `model`; together they must be attachable to a
// model built from model.config(), or the checkpoint will not load. InvalidArgument, before
// anything is built, for a null module, an empty or repeated module name, invalid metadata (as
// FromProto checks), or a NaN or infinite value in any tensor (it could never be loaded), naming
// the parameter set and tensor. `message` must not be null.
absl::Status ToCheckpointProto(const nn::Model& model,
                               const std::vector<const peft::PetModule*>& modules,
                               const CheckpointMetadata& metadata, v1::ModelCheckpoint* message);

// Writes `model`, `modules` and `metadata` to `path` atomically (WriteEnvelope, payload kind
// kModelCheckpoint): after any failure the previous file at `path`, if any, is still there and
// loadable. Errors are those of ToCheckpointProto (InvalidArgument, nothing written) and of the
// file system, passed through.
absl::Status SaveCheckpoint(base::FileSystem& fs, absl::string_view path, const nn::Model& model,
                            const std::vector<const peft::PetModule*>& modules,
                            const CheckpointMetadata& metadata);

// A model restored from a checkpoint. `modules` are attached to `*model` in stored order; they
// detach when destroyed, which the member order guarantees happens before `model` is destroyed.
// Moving the struct is fine; if `model` is moved out, keep it alive as long as the modules.
struct LoadedCheckpoint {
  std::unique_ptr<nn::Model> model;
  std::vector<std::unique_ptr<peft::PetModule>> modules;
  CheckpointMetadata metadata;
};

// Rebuilds what ToCheckpointProto stored: a model from the config (nn::Model::Create), the
// backbone and head values copied in and their trainable flags restored as stored, each module
// rebuilt (peft::PetModule::FromParameters) and attached. `source_name` (a path, or e.g.
// "download from server") appears in every error message. Errors:
//
//   FailedPrecondition  a format_version newer than kCheckpointFormatVersion.
//   InvalidArgument     everything else wrong with the content: format_version 0 (unset), an
//                       invalid config, a backbone or head whose tensors do not match what the
//                       config builds ("its backbone does not match its config"),
//                       a non-finite value, a module that does not rebuild or attach, invalid
//                       metadata.
absl::StatusOr<LoadedCheckpoint> FromCheckpointProto(const v1::ModelCheckpoint& message,
                                                     absl::string_view source_name);

// Reads the checkpoint at `path` (ReadEnvelope with `max_bytes`, so a file larger than that is
// refused with ResourceExhausted before it is read) and rebuilds it with FromCheckpointProto.
// Besides FromCheckpointProto's errors: file system errors pass through (NotFound, ...); a
// truncated or damaged file is DataLoss, a file that is not a model checkpoint InvalidArgument
// and an envelope format newer than this build FailedPrecondition, each naming `path`.
absl::StatusOr<LoadedCheckpoint> LoadCheckpoint(const base::FileSystem& fs, absl::string_view path,
                                                uint64_t max_bytes);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_CHECKPOINT_H_
