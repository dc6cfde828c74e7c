#include "client/sdk/device_state_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/envelope.h"

namespace fedcl::sdk {

DeviceStateStore::DeviceStateStore(base::FileSystem& fs, std::string storage_dir)
    : fs_(fs),
      storage_dir_(std::move(storage_dir)),
      path_(base::JoinPath(storage_dir_, kFileName)),
      backup_path_(absl::StrCat(path_, kBackupSuffix)) {}

absl::StatusOr<v1::DeviceState> DeviceStateStore::ReadOne(const std::string& path,
                                                          uint64_t client_id,
                                                          const std::string& method) const {
  v1::DeviceState state;
  FEDCL_RETURN_IF_ERROR(
      proto::ReadEnvelope(fs_, path, proto::PayloadKind::kDeviceState, &state, kMaxStateBytes));
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
  return loaded;
}

absl::Status DeviceStateStore::Save(const v1::DeviceState& state) {
  FEDCL_RETURN_IF_ERROR(fs_.CreateDirectories(storage_dir_));
  if (fs_.Exists(path_)) FEDCL_RETURN_IF_ERROR(fs_.RenameFile(path_, backup_path_));
  return proto::WriteEnvelope(fs_, path_, proto::PayloadKind::kDeviceState, state);
}

}  // namespace fedcl::sdk
