// A device session's durable state (device_session.h): what the host persists and restores. The
// codec to and from fedcl.v1.DeviceState lives in proto/ (proto/device_state.h); this is its core
// form, with no protobuf in it.
#ifndef FEDCL_CORE_DEVICE_SESSION_STATE_H_
#define FEDCL_CORE_DEVICE_SESSION_STATE_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/cl/session_trainer.h"
#include "core/fl/round_types.h"
#include "core/peft/module_spec.h"

namespace fedcl::device {

struct SessionModuleState {
  std::string name;         // the trainer's set name
  std::string server_name;  // empty for a grown adapter the server has not taken
  int64_t version = -1;     // -1: never synced (the trainer's initial values)
  std::vector<float> base;  // the values the queued deltas apply to (see device_session.h)
  // As the server described it: how a trainer that adopts modules (the recipe method) takes it
  // on again at a restart. Unused for the modules a method creates itself.
  peft::ModuleSpec spec;
  bool adopted = false;
  bool descriptor_pending = false;  // a grown adapter whose descriptor the pool has not had
  // Error feedback: what compressing its submitted deltas has not yet delivered (empty: none).
  std::vector<float> residual;
};

struct SessionRecordState {
  uint64_t sequence = 0;
  int64_t batches = 0, samples = 0;
  double loss_sum = 0.0;
  std::vector<std::vector<float>> deltas;  // one per module, in `modules` order
};

// An update sent and not yet answered: resubmitted as it was until the server answers.
struct InFlightSubmission {
  int64_t round = 0;
  uint64_t last_sequence = 0;              // the last record it sums
  std::vector<fl::ModuleVersion> modules;  // server name and base version of each delta
  // How each delta is compressed (parallel to `modules`; empty: none is).
  std::vector<fl::CompressionSpec> compression;
};

struct SessionState {
  std::vector<SessionModuleState> modules;
  std::vector<SessionRecordState> queue;  // oldest first
  uint64_t next_sequence = 1;
  std::optional<InFlightSubmission> in_flight;
  std::vector<cl::ModuleProposal> pending_proposals;  // grown adapters not yet proposed
  std::set<std::string> not_installed;                // pooled adapters the trainer does not run
  std::set<std::string> descriptor_refused;           // pooled descriptors the trainer cannot use
  std::optional<int64_t> enrolled_round;
  // Counters over the device's life.
  int64_t submissions = 0;
  int64_t rounds_closed = 0;
  int64_t updates_dropped = 0;
  int64_t records_dropped = 0;
  int64_t last_submitted_round = -1;
};

}  // namespace fedcl::device

#endif  // FEDCL_CORE_DEVICE_SESSION_STATE_H_
