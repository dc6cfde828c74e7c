#include "client/client_state.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/envelope.h"
#include "proto/federation_convert.h"
#include "proto/tensor_convert.h"

namespace fedcl::client {
namespace {

// A delta's values as a ParameterSet, so it travels in the same tensor encoding as everything else.
nn::ParameterSet DeltaAsSet(const fl::ModuleUpdate& module) {
  nn::ParameterSet set(module.name);
  for (const fl::TensorSpec& spec : module.layout) set.Add(spec.name, spec.shape, true);
  FEDCL_CHECK(set.num_values() == static_cast<int64_t>(module.values.size()))
      << "module '" << module.name << "' has " << module.values.size() << " values for a layout of "
      << set.num_values();
  std::copy(module.values.begin(), module.values.end(), set.flat_values().data());
  return set;
}

absl::Status Invalid(absl::string_view what, const absl::Status& status) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", status.message()));
}

absl::StatusOr<HeldModule> HeldFromProto(const v1::ModulePayload& message) {
  const std::string what = absl::StrCat("held module '", message.module().name(), "'");
  HeldModule module;
  absl::StatusOr<fl::ModuleSpec> spec = proto::SpecFromProto(message.module());
  if (!spec.ok()) return Invalid(what, spec.status());
  module.spec = *std::move(spec);
  module.version = message.module().version();
  absl::StatusOr<nn::ParameterSet> values = proto::FromProto(message.parameters());
  if (!values.ok()) return Invalid(what, values.status());
  module.values = *std::move(values);
  return module;
}

absl::StatusOr<PendingUpdate> PendingFromProto(const v1::PendingUpdate& message) {
  PendingUpdate pending;
  pending.round = message.round();
  pending.update.num_samples = message.num_samples();
  pending.update.local_steps = message.local_steps();
  pending.update.loss = message.loss();
  for (const v1::PendingModuleDelta& delta : message.modules()) {
    const std::string what = absl::StrCat("pending delta of module '", delta.name(), "'");
    for (const fl::ModuleUpdate& seen : pending.update.modules) {
      if (seen.name == delta.name()) return absl::InvalidArgumentError(what + " appears twice");
    }
    absl::StatusOr<nn::ParameterSet> set = proto::FromProto(delta.delta());
    if (!set.ok()) return Invalid(what, set.status());
    fl::ModuleUpdate module;
    module.name = delta.name();
    module.base_version = delta.base_version();
    for (const nn::TensorInfo& info : set->tensors())
      module.layout.push_back({info.name, info.shape});
    module.values.assign(set->flat_values().data(), set->flat_values().data() + set->num_values());
    pending.update.modules.push_back(std::move(module));
  }
  if (pending.update.modules.empty()) {
    return absl::InvalidArgumentError("the pending update has no modules");
  }
  return pending;
}

}  // namespace

void ToProto(const ClientState& state, v1::ClientState* message) {
  message->Clear();
  message->set_format_version(kClientStateFormatVersion);
  message->set_client_id(state.client_id);
  if (state.enrolled_round.has_value()) message->set_enrolled_round(*state.enrolled_round);
  message->set_backbone_digest(state.backbone_digest);
  for (const HeldModule& module : state.modules) {
    v1::ModulePayload* held = message->add_modules();
    proto::ToProto(module.spec, held->mutable_module());
    held->mutable_module()->set_version(module.version);
    held->mutable_module()->set_num_values(module.values.num_values());
    proto::ToProto(module.values, held->mutable_parameters());
  }
  if (state.last_submitted_round.has_value()) {
    message->set_last_submitted_round(*state.last_submitted_round);
  }
  if (state.pending.has_value()) {
    v1::PendingUpdate* pending = message->mutable_pending();
    pending->set_round(state.pending->round);
    pending->set_num_samples(state.pending->update.num_samples);
    pending->set_local_steps(state.pending->update.local_steps);
    pending->set_loss(state.pending->update.loss);
    for (const fl::ModuleUpdate& module : state.pending->update.modules) {
      v1::PendingModuleDelta* delta = pending->add_modules();
      delta->set_name(module.name);
      delta->set_base_version(module.base_version);
      proto::ToProto(DeltaAsSet(module), delta->mutable_delta());
    }
  }
  message->set_participations(state.participations);
  message->set_dropped_updates(state.dropped_updates);
}

absl::StatusOr<ClientState> FromProto(const v1::ClientState& message) {
  if (message.format_version() > kClientStateFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("client state format version ", message.format_version(),
                     " is newer than this build reads (", kClientStateFormatVersion, ")"));
  }
  if (message.format_version() == 0) {
    return absl::InvalidArgumentError("client state without a format version");
  }
  ClientState state;
  state.client_id = message.client_id();
  if (message.has_enrolled_round()) state.enrolled_round = message.enrolled_round();
  state.backbone_digest = message.backbone_digest();
  for (const v1::ModulePayload& held : message.modules()) {
    FEDCL_ASSIGN_OR_RETURN(HeldModule module, HeldFromProto(held));
    for (const HeldModule& seen : state.modules) {
      if (seen.spec.name == module.spec.name) {
        return absl::InvalidArgumentError(
            absl::StrCat("held module '", module.spec.name, "' appears twice"));
      }
    }
    state.modules.push_back(std::move(module));
  }
  if (message.has_last_submitted_round()) {
    state.last_submitted_round = message.last_submitted_round();
  }
  if (message.has_pending()) {
    FEDCL_ASSIGN_OR_RETURN(state.pending, PendingFromProto(message.pending()));
  }
  if (message.participations() < 0 || message.dropped_updates() < 0) {
    return absl::InvalidArgumentError("client state with negative counters");
  }
  state.participations = message.participations();
  state.dropped_updates = message.dropped_updates();
  return state;
}

ClientStateStore::ClientStateStore(base::FileSystem& fs, std::string state_dir)
    : fs_(fs), state_dir_(std::move(state_dir)), path_(base::JoinPath(state_dir_, kFileName)) {}

absl::StatusOr<ClientStateStore::Loaded> ClientStateStore::Load(fl::ClientId client) {
  Loaded loaded;
  loaded.state.client_id = client;
  v1::ClientState message;
  absl::Status status =
      proto::ReadEnvelope(fs_, path_, proto::PayloadKind::kClientState, &message, kMaxStateBytes);
  if (absl::IsNotFound(status)) return loaded;
  absl::StatusOr<ClientState> state =
      status.ok() ? FromProto(message) : absl::StatusOr<ClientState>(status);
  if (state.ok()) {
    if (state->client_id != client) {
      return absl::FailedPreconditionError(
          absl::StrCat("the state in '", path_, "' belongs to client ", state->client_id, ", not ",
                       client, ": give each client its own state directory"));
    }
    loaded.state = *std::move(state);
    loaded.resumed = true;
    return loaded;
  }
  // Damaged, foreign or undecodable: keep it for inspection and start over. A newer format is
  // not damage; it stays where it is and the caller stops.
  status = state.status();
  if (!absl::IsDataLoss(status) && !absl::IsInvalidArgument(status)) return status;
  FEDCL_RETURN_IF_ERROR(fs_.RenameFile(path_, absl::StrCat(path_, kCorruptSuffix)));
  loaded.set_aside = true;
  loaded.problem = std::string(status.message());
  return loaded;
}

absl::Status ClientStateStore::Save(const ClientState& state) {
  FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(state_dir_));
  v1::ClientState message;
  ToProto(state, &message);
  return proto::WriteEnvelope(fs_, path_, proto::PayloadKind::kClientState, message);
}

}  // namespace fedcl::client
