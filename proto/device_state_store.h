// Where a device keeps its state (the edge SDK and fedcl-client alike): <storage_dir>/device_state,
// a fedcl.v1.DeviceState (proto/fedcl/v1/device_state.proto, read and written by
// proto/device_state.h) in a checksummed envelope, and the previous good copy as
// device_state.prev.
//
// Save moves the current file to device_state.prev, then writes the new one atomically
// (base::FileSystem::WriteFileAtomically: old or new, never a mix). Power lost between the two
// leaves no current file and a good .prev, which Load then reads. Load reads the current file; one
// that is damaged, not a device state, or for another client id or method is renamed to
// device_state.corrupt (replacing an older one), reported, and .prev is tried the same way; with
// neither the device starts fresh and takes the server's modules at its next sync.
//
// A directory that has no device state but an older fedcl-client's <storage_dir>/client_state
// (fedcl.v1.ClientState: installed modules and an update awaiting acknowledgement) is read once
// and converted (a recipe device): its modules are kept, and its pending update is resubmitted
// for its round, so a device upgraded in place keeps its learning and counts it once.
//
// Thread-compatible: one store per storage directory, called under the client's lock.
#ifndef FEDCL_PROTO_DEVICE_STATE_STORE_H_
#define FEDCL_PROTO_DEVICE_STATE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/filesystem.h"
#include "proto/fedcl/v1/device_state.pb.h"

namespace fedcl::proto {

inline constexpr uint32_t kDeviceStateFormatVersion = 2;

class DeviceStateStore {
 public:
  static constexpr char kFileName[] = "device_state";
  static constexpr char kBackupSuffix[] = ".prev";
  static constexpr char kCorruptSuffix[] = ".corrupt";
  static constexpr uint64_t kMaxStateBytes = uint64_t{1} << 30;

  // `fs` must outlive the store.
  DeviceStateStore(base::FileSystem& fs, std::string storage_dir);

  struct Loaded {
    std::optional<v1::DeviceState> state;  // none: start fresh
    bool set_aside = false;                // a corrupt file was renamed to .corrupt
    bool from_backup = false;              // the state came from device_state.prev
    bool from_client_state = false;        // converted from an older fedcl-client's file
    std::string problem;                   // why a file was set aside
  };
  // Errors: FailedPrecondition for a state written by a newer build (left in place); file system
  // errors other than NotFound pass through.
  absl::StatusOr<Loaded> Load(uint64_t client_id, const std::string& method);

  // Rotates the current file to .prev and writes `state` atomically (see the top of this file).
  absl::Status Save(const v1::DeviceState& state);

  const std::string& path() const { return path_; }

 private:
  // An older fedcl-client's client_state file converted, or nullopt if there is none.
  absl::StatusOr<std::optional<v1::DeviceState>> LoadClientState(uint64_t client_id,
                                                                 const std::string& method);
  // The state in `path`, or the reason it is unusable (DataLoss / InvalidArgument: set it aside).
  absl::StatusOr<v1::DeviceState> ReadOne(const std::string& path, uint64_t client_id,
                                          const std::string& method) const;

  base::FileSystem& fs_;
  const std::string storage_dir_;
  const std::string path_;
  const std::string backup_path_;
};

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_DEVICE_STATE_STORE_H_
