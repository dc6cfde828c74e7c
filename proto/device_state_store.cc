#include "proto/device_state_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/client_state.pb.h"

namespace fedcl::proto {

DeviceStateStore::DeviceStateStore(base::FileSystem& fs, std::string storage_dir)
    : fs_(fs),
      storage_dir_(std::move(storage_dir)),
      path_(base::JoinPath(storage_dir_, kFileName)),
      backup_path_(absl::StrCat(path_, kBackupSuffix)) {}

absl::StatusOr<v1::DeviceState> DeviceStateStore::ReadOne(const std::string& path,
                                                          uint64_t client_id,
                                                          const std::string& method) const {
  v1::DeviceState state;
  FEDCL_RETURN_IF_ERROR(ReadEnvelope(fs_, path, PayloadKind::kDeviceState, &state, kMaxStateBytes));
  if (state.format_version() > kDeviceStateFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", path, "' has device state format version ", state.format_version(),
                     ", newer than this build reads (", kDeviceStateFormatVersion, ")"));
  }
  if (state.format_version() == 0)
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' has no format version"));
  if (state.client_id() != client_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' belongs to client ", state.client_id(), ", not ", client_id));
  }
  if (state.method() != method) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' holds a '", state.method(), "' learner, not '", method, "'"));
  }
  return state;
}

absl::StatusOr<DeviceStateStore::Loaded> DeviceStateStore::Load(uint64_t client_id,
                                                                const std::string& method) {
  Loaded loaded;
  for (const std::string& path : {path_, backup_path_}) {
    absl::StatusOr<v1::DeviceState> state = ReadOne(path, client_id, method);
    if (state.ok()) {
      loaded.state = *std::move(state);
      loaded.from_backup = path == backup_path_;
      return loaded;
    }
    const absl::Status& status = state.status();
    if (absl::IsNotFound(status)) continue;
    if (!absl::IsDataLoss(status) && !absl::IsInvalidArgument(status)) return status;
    // Damaged or foreign: keep it for inspection, never load it, try the older copy.
    FEDCL_RETURN_IF_ERROR(fs_.RenameFile(path, absl::StrCat(path_, kCorruptSuffix)));
    loaded.set_aside = true;
    if (!loaded.problem.empty()) absl::StrAppend(&loaded.problem, "; ");
    absl::StrAppend(&loaded.problem, status.message());
  }
  if (loaded.set_aside) return loaded;
  FEDCL_ASSIGN_OR_RETURN(loaded.state, LoadClientState(client_id, method));
  loaded.from_client_state = loaded.state.has_value();
  return loaded;
}

namespace {

constexpr char kClientStateFileName[] = "client_state";

// The set a recipe device's learner holds a module in: the model's "head" or "backbone", or the
// PET module of that name.
std::string SetName(const v1::ModuleDescriptor& module) {
  if (module.role() == "head") return "head";
  if (module.role() == "backbone") return "backbone";
  return module.name();
}

// An older fedcl-client's state (format 1 of client_state.proto) as a device state: its modules
// taken on by the recipe method, and its update awaiting acknowledgement queued and in flight.
v1::DeviceState FromClientState(const v1::ClientState& old, const std::string& method) {
  v1::DeviceState state;
  state.set_format_version(kDeviceStateFormatVersion);
  state.set_client_id(old.client_id());
  state.set_method(method);
  state.set_backbone_digest(old.backbone_digest());
  if (old.has_enrolled_round()) state.set_enrolled_round(old.enrolled_round());
  for (const v1::ModulePayload& held : old.modules()) {
    v1::DeviceModule* m = state.add_modules();
    m->set_version(held.module().version());
    *m->mutable_base() = held.parameters();
    m->mutable_base()->set_name(SetName(held.module()));
    m->set_server_name(held.module().name());
    m->set_adopted(true);
    m->set_role(held.module().role());
    *m->mutable_pet() = held.module().pet();
    m->set_block(held.module().block());
  }
  state.set_next_sequence(1);
  if (old.has_pending()) {
    const v1::PendingUpdate& pending = old.pending();
    v1::QueuedDelta* q = state.add_queue();
    q->set_sequence(1);
    q->set_batches(pending.local_steps());
    q->set_samples(pending.num_samples());
    q->set_loss_sum(pending.loss() * static_cast<double>(pending.local_steps()));
    v1::InFlightSubmission* in_flight = state.mutable_in_flight();
    in_flight->set_round(pending.round());
    in_flight->set_last_sequence(1);
    for (const v1::PendingModuleDelta& delta : pending.modules()) {
      v1::ParameterSet* d = q->add_deltas();
      *d = delta.delta();
      for (const v1::ModulePayload& held : old.modules()) {
        if (held.module().name() == delta.name()) d->set_name(SetName(held.module()));
      }
      v1::InFlightSubmission::Base* base = in_flight->add_modules();
      base->set_name(delta.name());
      base->set_version(delta.base_version());
    }
    state.set_next_sequence(2);
  }
  state.set_submissions(old.participations());
  state.set_updates_dropped(old.dropped_updates());
  state.set_last_round(old.has_last_submitted_round() ? old.last_submitted_round() : -1);
  return state;
}

}  // namespace

absl::StatusOr<std::optional<v1::DeviceState>> DeviceStateStore::LoadClientState(
    uint64_t client_id, const std::string& method) {
  const std::string path = base::JoinPath(storage_dir_, kClientStateFileName);
  if (method != "recipe" || !fs_.Exists(path)) return std::nullopt;
  v1::ClientState old;
  absl::Status read = ReadEnvelope(fs_, path, PayloadKind::kClientState, &old, kMaxStateBytes);
  // A damaged or foreign old file is simply not converted: the device starts fresh.
  if (!read.ok() || old.client_id() != client_id || old.format_version() != 1) return std::nullopt;
  return FromClientState(old, method);
}

absl::Status DeviceStateStore::Save(const v1::DeviceState& state) {
  FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(storage_dir_));
  if (fs_.Exists(path_)) FEDCL_RETURN_IF_ERROR(fs_.RenameFile(path_, backup_path_));
  return WriteEnvelope(fs_, path_, PayloadKind::kDeviceState, state);
}

}  // namespace fedcl::proto
