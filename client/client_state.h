// A device's durable state, kept in its state directory so that a restarted fedcl-client
// continues where it stopped: same enrolment, the modules it already holds (no download), and an
// update that was trained but never acknowledged (resubmitted if its round is still open).
//
//   client::ClientStateStore store(fs, "/var/lib/fedcl-client");
//   FEDCL_ASSIGN_OR_RETURN(client::ClientStateStore::Loaded loaded, store.Load(/*client=*/7));
//   client::ClientState state = std::move(loaded.state);     // fresh if there was none
//   ...
//   state.pending = client::PendingUpdate{round, update};
//   FEDCL_RETURN_IF_ERROR(store.Save(state));                // atomic: old or new, never a mix
//
// The file, <state_dir>/client_state, is a fedcl.v1.ClientState (proto/fedcl/v1/client_state.proto)
// inside a checksummed envelope (payload kind kClientState), replaced atomically through
// base::FileSystem::WriteFileAtomically on every Save. A file that is damaged (DataLoss), not a
// client state (InvalidArgument) or whose content does not decode is set aside as
// <state_dir>/client_state.corrupt (replacing an older one) and Load reports a fresh state with
// `set_aside` and the reason, so the device starts over instead of stopping.
//
// Thread-compatible: one store per state directory, used from one thread.
#ifndef FEDCL_CLIENT_CLIENT_STATE_H_
#define FEDCL_CLIENT_CLIENT_STATE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/filesystem.h"
#include "core/fl/local_trainer.h"
#include "core/fl/round_types.h"
#include "core/nn/parameter_set.h"
#include "proto/fedcl/v1/client_state.pb.h"

namespace fedcl::client {

// The ClientState layout this build writes and reads.
inline constexpr uint32_t kClientStateFormatVersion = 1;

// A module as the device holds it: the published values at `version`.
struct HeldModule {
  fl::ModuleSpec spec;
  int64_t version = 0;
  nn::ParameterSet values;
};

// An update trained for `round`, saved before it is submitted and kept until acknowledged.
struct PendingUpdate {
  int64_t round = 0;
  fl::LocalUpdate update;
};

struct ClientState {
  fl::ClientId client_id = 0;
  // The round Join reported the client enrolled at; unset until the first Join.
  std::optional<int64_t> enrolled_round;
  // ServerInfo.backbone_digest of the backbone the modules were installed on.
  std::string backbone_digest;
  // Modules held, in the server's pool order, each at the version last downloaded.
  std::vector<HeldModule> modules;
  // The last round whose update was acknowledged; unset if none.
  std::optional<int64_t> last_submitted_round;
  // Trained, not yet acknowledged.
  std::optional<PendingUpdate> pending;
  // Updates acknowledged, and updates dropped (round closed, modules moved on), over the
  // device's life.
  int64_t participations = 0;
  int64_t dropped_updates = 0;
};

// Conversion to and from the message. FromProto validates: FailedPrecondition for a format
// version newer than this build; InvalidArgument for version 0, a module or delta that does not
// decode (non-finite values included) or a pending delta whose layout repeats a module.
void ToProto(const ClientState& state, v1::ClientState* message);
absl::StatusOr<ClientState> FromProto(const v1::ClientState& message);

class ClientStateStore {
 public:
  static constexpr char kFileName[] = "client_state";
  static constexpr char kCorruptSuffix[] = ".corrupt";
  // Refuse state files larger than this (a state holds a few modules; the default ViT's whole
  // backbone is under 1 MB).
  static constexpr uint64_t kMaxStateBytes = uint64_t{1} << 30;

  // `fs` must outlive the store. The directory is created by Save if missing.
  ClientStateStore(base::FileSystem& fs, std::string state_dir);

  struct Loaded {
    // The stored state, or a fresh one for the client (no file, or one set aside).
    ClientState state;
    // True if a state file was read.
    bool resumed = false;
    // True if a corrupt file was renamed to client_state.corrupt; `problem` says why.
    bool set_aside = false;
    std::string problem;
  };

  // Reads the state of `client`. A missing file gives a fresh state; a corrupt one is set aside
  // (see the top of this file). Errors: FailedPrecondition for a state written by a newer build
  // (left in place) or one that belongs to another client id (a misconfigured state directory);
  // other file system errors pass through, as do those of the rename that sets a file aside.
  absl::StatusOr<Loaded> Load(fl::ClientId client);

  // Replaces the stored state atomically. File system errors pass through.
  absl::Status Save(const ClientState& state);

  const std::string& path() const { return path_; }

 private:
  base::FileSystem& fs_;
  const std::string state_dir_;
  const std::string path_;
};

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_CLIENT_STATE_H_
