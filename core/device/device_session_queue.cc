// DeviceSession: the modules, the offline queue, the in-flight update and the durable state (the
// contract is in device_session.h).
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/device/device_session.h"

namespace fedcl::device {

int64_t DeviceSession::Record::bytes() const {
  int64_t n = 0;
  for (const Eigen::VectorXf& d : deltas) n += d.size() * int64_t{sizeof(float)};
  return n;
}

DeviceSession::DeviceSession(const SessionOptions& options, cl::SessionTrainer& trainer,
                             SessionEnvironment environment)
    : options_(options), trainer_(trainer), env_(std::move(environment)) {
  FEDCL_CHECK(env_.mu != nullptr) << "a device session needs the host's model mutex";
  for (nn::ParameterSet* set : trainer_.SharedModules())
    AddModuleLocked(set, set->name(), -1, set->flat_values(), /*on_server=*/true);
}

DeviceSession::Module* DeviceSession::FindLocked(absl::string_view server_name) {
  for (Module& m : modules_)
    if (m.on_server && m.server_name == server_name) return &m;
  return nullptr;
}

DeviceSession::Module* DeviceSession::FindByLiveLocked(const nn::ParameterSet* live) {
  for (Module& m : modules_)
    if (m.live == live) return &m;
  return nullptr;
}

void DeviceSession::AddModuleLocked(nn::ParameterSet* live, std::string server_name,
                                    int64_t version, const Eigen::VectorXf& base, bool on_server) {
  Module m;
  m.live = live;
  m.server_name = std::move(server_name);
  m.on_server = on_server;
  m.version = version;
  m.base = base;
  m.committed = base;
  modules_.push_back(std::move(m));
  // Every record holds one delta per module: the new module's is zero in the older ones.
  for (Record& r : queue_) r.deltas.push_back(Eigen::VectorXf::Zero(base.size()));
}

void DeviceSession::RebaseLocked(Module& m, const nn::ParameterSet& values, int64_t version) {
  const size_t i = static_cast<size_t>(&m - modules_.data());
  // Learning not yet committed rides along; computed before committed moves.
  const Eigen::VectorXf uncommitted = m.live->flat_values() - m.committed;
  m.base = values.flat_values();
  m.committed = m.base;
  for (const Record& r : queue_) {
    if (!r.deltas[i].isZero(0.0f)) m.committed += r.deltas[i];
  }
  m.live->flat_values() = m.committed;
  if (!uncommitted.isZero(0.0f)) m.live->flat_values() += uncommitted;
  m.version = version;
}

void DeviceSession::AfterLearnLocked(int64_t samples, double loss) {
  ++uncommitted_.batches;
  uncommitted_.samples += samples;
  uncommitted_.loss_sum += loss;
  // A grown adapter becomes a module at once, so that its learning is queued like any other's.
  if (trainer_.expansion() != nullptr) TakeGrowthLocked();
}

absl::Status DeviceSession::CommitLocked() {
  if (uncommitted_.batches == 0) return absl::OkStatus();
  Record r = std::move(uncommitted_);
  uncommitted_ = Record{};
  r.sequence = next_sequence_++;
  r.deltas.reserve(modules_.size());
  for (Module& m : modules_) {
    r.deltas.push_back(m.live->flat_values() - m.committed);
    m.committed = m.live->flat_values();
  }
  queue_bytes_ += r.bytes();
  queue_.push_back(std::move(r));
  EnforceQueueBoundLocked();
  return absl::OkStatus();
}

void DeviceSession::DiscardUncommittedLocked() {
  for (Module& m : modules_) m.live->flat_values() = m.committed;
  uncommitted_ = Record{};
}

void DeviceSession::EnforceQueueBoundLocked() {
  // The newest record always stays (dropping it would drop the learning just done), and so do
  // records in flight (the server may hold them: they must stay resubmittable as they were).
  while (queue_.size() > 1 && queue_bytes_ > options_.offline_queue_bytes &&
         !(in_flight_.has_value() && queue_.front().sequence <= in_flight_->last_sequence)) {
    Record& oldest = queue_.front();
    // Folded into base: the device keeps it until it re-bases, the server never sees it.
    for (size_t i = 0; i < modules_.size(); ++i) modules_[i].base += oldest.deltas[i];
    queue_bytes_ -= oldest.bytes();
    queue_.pop_front();
    ++counters_.records_dropped;
  }
}

fl::LocalUpdate DeviceSession::BuildUpdateLocked(const InFlightSubmission& in_flight) {
  fl::LocalUpdate update;
  next_residuals_.assign(in_flight.modules.size(), Eigen::VectorXf());
  std::vector<Eigen::VectorXf> sums(in_flight.modules.size());
  std::vector<const Module*> modules(in_flight.modules.size(), nullptr);
  for (size_t k = 0; k < in_flight.modules.size(); ++k) {
    for (const Module& m : modules_)
      if (m.on_server && m.server_name == in_flight.modules[k].name) modules[k] = &m;
  }
  for (const Record& r : queue_) {
    if (r.sequence > in_flight.last_sequence) break;
    update.num_samples += r.samples;
    update.local_steps += r.batches;
    update.loss += r.loss_sum;
    for (size_t k = 0; k < modules.size(); ++k) {
      if (modules[k] == nullptr) continue;
      const Eigen::VectorXf& d = r.deltas[static_cast<size_t>(modules[k] - modules_.data())];
      if (sums[k].size() == 0) {
        sums[k] = d;
      } else {
        sums[k] += d;
      }
    }
  }
  if (update.local_steps > 0) update.loss /= static_cast<double>(update.local_steps);
  for (size_t k = 0; k < modules.size(); ++k) {
    if (modules[k] == nullptr || sums[k].size() == 0) continue;
    fl::ModuleUpdate mu;
    mu.name = in_flight.modules[k].name;
    mu.base_version = in_flight.modules[k].version;
    for (const nn::TensorInfo& t : modules[k]->live->tensors())
      mu.layout.push_back({t.name, t.shape});
    mu.values.assign(sums[k].data(), sums[k].data() + sums[k].size());
    const fl::CompressionSpec spec =
        k < in_flight.compression.size() ? in_flight.compression[k] : fl::CompressionSpec{};
    if (spec.compresses()) {
      Eigen::VectorXf residual = modules[k]->residual.size() == sums[k].size()
                                     ? modules[k]->residual
                                     : Eigen::VectorXf::Zero(sums[k].size());
      std::vector<float> decoded(mu.values.size());
      absl::StatusOr<fl::CompressedValues> compressed =
          fl::CompressWithFeedback(mu.values, absl::MakeSpan(residual.data(), residual.size()),
                                   spec, absl::MakeSpan(decoded));
      // Learning that is not finite goes as it is, for the server to refuse by name.
      if (compressed.ok()) {
        mu.values = std::move(decoded);
        mu.compressed = *std::move(compressed);
        next_residuals_[k] = std::move(residual);
      }
    }
    update.modules.push_back(std::move(mu));
  }
  return update;
}

void DeviceSession::SettleLocked(const InFlightSubmission& in_flight, bool acknowledged) {
  std::vector<Eigen::VectorXf> residuals = std::move(next_residuals_);
  next_residuals_.clear();
  if (!acknowledged) {
    in_flight_.reset();
    return;
  }
  // Error feedback: the server has the compressed deltas; what they lost waits for the next.
  // (Settling always follows the build of the update it answers.)
  for (size_t k = 0; k < residuals.size() && k < in_flight.modules.size(); ++k) {
    if (residuals[k].size() == 0) continue;
    if (Module* m = FindLocked(in_flight.modules[k].name); m != nullptr)
      m->residual = std::move(residuals[k]);
  }
  // The submitted learning is the server's: fold it into base and drop its records. The learning
  // of a module to be submitted later (a grown adapter whose proposal is pending, or that awaits
  // its group's values) goes back on the queue as one record; a module the round did not list
  // is folded like the rest (the server does not pool it, so it never takes its learning).
  std::vector<bool> later(modules_.size(), false);
  for (size_t i = 0; i < modules_.size(); ++i) {
    const Module& m = modules_[i];
    later[i] = (m.on_server && m.version < 0) || (!m.on_server && ProposalPendingLocked(m));
  }
  Record kept;
  kept.sequence = in_flight.last_sequence;
  bool keep = false;
  for (size_t i = 0; i < modules_.size(); ++i)
    kept.deltas.push_back(Eigen::VectorXf::Zero(modules_[i].live->num_values()));
  while (!queue_.empty() && queue_.front().sequence <= in_flight.last_sequence) {
    Record& r = queue_.front();
    for (size_t i = 0; i < modules_.size(); ++i) {
      if (r.deltas[i].isZero(0.0f)) continue;
      if (later[i]) {
        kept.deltas[i] += r.deltas[i];
        keep = true;
      } else {
        modules_[i].base += r.deltas[i];
      }
    }
    queue_bytes_ -= r.bytes();
    queue_.pop_front();
  }
  if (keep) {
    queue_bytes_ += kept.bytes();
    queue_.push_front(std::move(kept));
  }
  in_flight_.reset();
}

void DeviceSession::DropLearningLocked(uint64_t last_sequence) {
  // Recipe devices: the learning of a round the server did not take is dropped, and the modules
  // go back to base (plus any later records), exactly.
  while (!queue_.empty() && queue_.front().sequence <= last_sequence) {
    queue_bytes_ -= queue_.front().bytes();
    queue_.pop_front();
  }
  for (size_t i = 0; i < modules_.size(); ++i) {
    Module& m = modules_[i];
    const Eigen::VectorXf uncommitted = m.live->flat_values() - m.committed;
    m.committed = m.base;
    for (const Record& r : queue_)
      if (!r.deltas[i].isZero(0.0f)) m.committed += r.deltas[i];
    m.live->flat_values() = m.committed;
    if (!uncommitted.isZero(0.0f)) m.live->flat_values() += uncommitted;
  }
  ++counters_.updates_dropped;
}

absl::Status DeviceSession::SaveLocked() { return env_.save ? env_.save() : absl::OkStatus(); }

int64_t DeviceSession::QueuedBatchesLocked() const {
  int64_t batches = 0;
  for (const Record& r : queue_) batches += r.batches;
  return batches;
}

int64_t DeviceSession::HeldBytesLocked() const {
  int64_t bytes = queue_bytes_;
  for (const Module& m : modules_) bytes += 2 * m.base.size() * int64_t{sizeof(float)};
  return bytes;
}

}  // namespace fedcl::device
