// A device's durable state to and from fedcl.v1.DeviceState (proto/fedcl/v1/device_state.proto):
// the device session's part (core/device/session_state.h) and the learner's progress with its
// method's private state (core/cl/learner.h). Hosts add their own fields (the SDK's counters,
// an adapted backbone) to the same message; proto/device_state_store.h keeps it on disk.
//
// Decoding treats the message as untrusted (a damaged or foreign file): InvalidArgument naming
// what is malformed, and the caller changes nothing. Format 1 messages (written by earlier
// builds) decode too: their SEMA mixtures (field 17) and LAE/SimpleCIL progress (fields 5-8)
// become the method's private state, and their "last round" of 0 with no submission means none.
#ifndef FEDCL_PROTO_DEVICE_STATE_H_
#define FEDCL_PROTO_DEVICE_STATE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/cl/learner.h"
#include "core/device/device_session.h"
#include "core/device/session_state.h"
#include "proto/fedcl/v1/device_state.pb.h"

namespace fedcl::proto {

// The session's fields of `out` (modules, queue, in-flight submission, proposals, counters); the
// others are left as they are.
void SessionStateToProto(const device::SessionState& state, v1::DeviceState* out);
absl::StatusOr<device::SessionState> SessionStateFromProto(const v1::DeviceState& in);

void ProgressToProto(const cl::LearnerProgress& progress, v1::LearnerProgressState* out);
// The learner's progress of `in` (format 2: progress.method; format 1: converted as above, which
// needs the width `model_dim` of the learner's ViT for SEMA's state).
absl::StatusOr<cl::LearnerProgress> ProgressFromProto(const v1::DeviceState& in, int model_dim);

// A device's whole state in one message: `client_id`, `method`, `backbone_digest`, the
// session's part, the learner's progress and task classes. Hosts set their own fields after it.
// Call with the session's mutex held.
v1::DeviceState EncodeDeviceState(uint64_t client_id, const std::string& method,
                                  const std::string& backbone_digest,
                                  const device::DeviceSession& session, cl::Learner& learner);

// Restores what EncodeDeviceState wrote into a learner and its session just built for the same
// backbone: the learner's progress and task classes first (a growing method's mixtures decide
// which modules there are), then the session over them. Everything is decoded first; the
// learner and the session each check their part whole. InvalidArgument naming what does not fit.
// Call with the session's mutex held.
absl::Status RestoreDeviceState(const v1::DeviceState& state, cl::Learner& learner,
                                device::DeviceSession& session);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_DEVICE_STATE_H_
