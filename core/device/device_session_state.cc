// DeviceSession: export and restore of the durable state (the contract is in device_session.h).
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/device/device_session.h"

namespace fedcl::device {
namespace {

std::vector<float> ToVector(const Eigen::VectorXf& v) { return {v.data(), v.data() + v.size()}; }

absl::Status CheckValues(const std::vector<float>& values, int64_t expected,
                         absl::string_view what) {
  if (static_cast<int64_t>(values.size()) != expected) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", values.size(), " values, the module ", expected));
  }
  for (float v : values) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(absl::StrCat(what, " is not finite"));
  }
  return absl::OkStatus();
}

}  // namespace

std::map<std::string, std::vector<float>> DeviceSession::ResidualsLocked() const {
  std::map<std::string, std::vector<float>> out;
  for (const Module& m : modules_)
    if (m.on_server && m.residual.size() > 0) out[m.server_name] = ToVector(m.residual);
  return out;
}

void DeviceSession::SetResidualsLocked(const std::map<std::string, std::vector<float>>& residuals) {
  for (Module& m : modules_) {
    auto it = residuals.find(m.server_name);
    if (!m.on_server || it == residuals.end() ||
        static_cast<int64_t>(it->second.size()) != m.live->num_values()) {
      continue;
    }
    m.residual = Eigen::Map<const Eigen::VectorXf>(it->second.data(),
                                                   static_cast<Eigen::Index>(it->second.size()));
  }
}

SessionState DeviceSession::ExportStateLocked() const {
  SessionState state;
  for (const Module& m : modules_) {
    SessionModuleState& out = state.modules.emplace_back();
    out.name = m.live->name();
    out.server_name = m.on_server ? m.server_name : std::string();
    out.version = m.version;
    out.base = ToVector(m.base);
    out.spec = m.spec;
    out.adopted = m.adopted;
    out.descriptor_pending = m.descriptor_pending;
    out.residual = ToVector(m.residual);
  }
  for (const Record& r : queue_) {
    SessionRecordState& out = state.queue.emplace_back();
    out.sequence = r.sequence;
    out.batches = r.batches;
    out.samples = r.samples;
    out.loss_sum = r.loss_sum;
    for (const Eigen::VectorXf& d : r.deltas) out.deltas.push_back(ToVector(d));
  }
  state.next_sequence = next_sequence_;
  state.in_flight = in_flight_;
  state.pending_proposals = pending_;
  state.not_installed = not_installed_;
  state.descriptor_refused = descriptor_refused_;
  state.enrolled_round = enrolled_round_;
  state.submissions = counters_.submissions;
  state.rounds_closed = counters_.rounds_closed;
  state.updates_dropped = counters_.updates_dropped;
  state.records_dropped = counters_.records_dropped;
  state.last_submitted_round = counters_.last_submitted_round;
  return state;
}

absl::Status DeviceSession::RestoreStateLocked(const SessionState& state) {
  // Modules the trainer takes on from the server (the recipe method) are adopted again first;
  // the trainer keeps them whatever happens below, as it would after a download.
  for (const SessionModuleState& stored : state.modules) {
    if (!stored.adopted) continue;
    bool present = false;
    for (nn::ParameterSet* set : trainer_.SharedModules()) present |= set->name() == stored.name;
    if (present) continue;
    // Taken on with its initial values (the layout comes from the spec); restored below.
    FEDCL_ASSIGN_OR_RETURN(nn::ParameterSet * adopted,
                           trainer_.AdoptModule(stored.spec, nn::ParameterSet()));
    if (adopted == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the stored module '", stored.name, "' is not one this trainer runs"));
    }
  }
  // One module per trainer set, named as the set; everything decoded before anything changes.
  std::vector<Module> modules;
  for (nn::ParameterSet* set : trainer_.SharedModules()) {
    Module m;
    m.live = set;
    m.server_name = set->name();
    m.base = set->flat_values();
    modules.push_back(std::move(m));
  }
  auto find = [&](const std::string& name) -> Module* {
    for (Module& m : modules)
      if (m.live->name() == name) return &m;
    return nullptr;
  };
  std::vector<const SessionModuleState*> stored_for(modules.size(), nullptr);
  std::vector<size_t> column;  // stored module k -> index in `modules`
  for (const SessionModuleState& stored : state.modules) {
    Module* m = find(stored.name);
    if (m == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no module '", stored.name, "'"));
    }
    const size_t i = static_cast<size_t>(m - modules.data());
    FEDCL_RETURN_IF_ERROR(CheckValues(stored.base, m->live->num_values(),
                                      absl::StrCat("the base of module '", stored.name, "'")));
    if (!stored.residual.empty()) {
      FEDCL_RETURN_IF_ERROR(
          CheckValues(stored.residual, m->live->num_values(),
                      absl::StrCat("the residual of module '", stored.name, "'")));
    }
    stored_for[i] = &stored;
    column.push_back(i);
  }
  std::deque<Record> queue;
  int64_t queue_bytes = 0;
  for (const SessionRecordState& r : state.queue) {
    if (r.deltas.size() != state.modules.size()) {
      return absl::InvalidArgumentError(absl::StrCat("queued record ", r.sequence, " has ",
                                                     r.deltas.size(), " deltas for ",
                                                     state.modules.size(), " modules"));
    }
    Record record{r.sequence, r.batches, r.samples, r.loss_sum, {}};
    for (const Module& m : modules) record.deltas.push_back(Eigen::VectorXf::Zero(m.base.size()));
    for (size_t k = 0; k < r.deltas.size(); ++k) {
      FEDCL_RETURN_IF_ERROR(
          CheckValues(r.deltas[k], modules[column[k]].live->num_values(),
                      absl::StrCat("a queued delta of '", state.modules[k].name, "'")));
      record.deltas[column[k]] =
          Eigen::Map<const Eigen::VectorXf>(r.deltas[k].data(), r.deltas[k].size());
    }
    queue_bytes += record.bytes();
    queue.push_back(std::move(record));
  }
  for (size_t i = 0; i < modules.size(); ++i) {
    Module& m = modules[i];
    if (const SessionModuleState* stored = stored_for[i]; stored != nullptr) {
      m.base = Eigen::Map<const Eigen::VectorXf>(stored->base.data(), stored->base.size());
      m.version = stored->version;
      m.on_server = !stored->server_name.empty();
      if (m.on_server) m.server_name = stored->server_name;
      m.spec = stored->spec;
      m.adopted = stored->adopted;
      m.descriptor_pending = stored->descriptor_pending;
      m.residual = Eigen::Map<const Eigen::VectorXf>(
          stored->residual.data(), static_cast<Eigen::Index>(stored->residual.size()));
    }
    m.committed = m.base;
    for (const Record& r : queue) m.committed += r.deltas[i];
  }
  // Everything fits: the trainer's values become the committed ones.
  for (Module& m : modules) m.live->flat_values() = m.committed;
  modules_ = std::move(modules);
  queue_ = std::move(queue);
  queue_bytes_ = queue_bytes;
  next_sequence_ = std::max<uint64_t>(state.next_sequence, 1);
  uncommitted_ = Record{};
  in_flight_ = state.in_flight;
  pending_ = state.pending_proposals;
  not_installed_ = state.not_installed;
  descriptor_refused_ = state.descriptor_refused;
  enrolled_round_ = state.enrolled_round;
  counters_.submissions = state.submissions;
  counters_.rounds_closed = state.rounds_closed;
  counters_.updates_dropped = state.updates_dropped;
  counters_.records_dropped = state.records_dropped;
  counters_.last_submitted_round = state.last_submitted_round;
  return absl::OkStatus();
}

DeviceSession::LearningMark DeviceSession::MarkLearningLocked() const {
  LearningMark mark;
  mark.state = ExportStateLocked();
  for (const Module& m : modules_) {
    mark.live.emplace_back(m.live->name(), ToVector(m.live->flat_values()));
    mark.committed.emplace_back(m.live->name(), ToVector(m.committed));
  }
  mark.uncommitted_batches = uncommitted_.batches;
  mark.uncommitted_samples = uncommitted_.samples;
  mark.uncommitted_loss_sum = uncommitted_.loss_sum;
  return mark;
}

absl::Status DeviceSession::RollBackLearningLocked(const LearningMark& mark) {
  FEDCL_RETURN_IF_ERROR(RestoreStateLocked(mark.state));
  auto marked = [&](const std::string& name, size_t size) -> Module* {
    for (Module& m : modules_)
      if (m.live->name() == name && m.live->num_values() == static_cast<int64_t>(size)) return &m;
    return nullptr;
  };
  for (size_t i = 0; i < mark.live.size(); ++i) {
    const auto& [name, live] = mark.live[i];
    const std::vector<float>& committed = mark.committed[i].second;
    Module* m = marked(name, live.size());
    if (m == nullptr || committed.size() != live.size()) {
      return absl::InternalError(
          absl::StrCat("rolling back: the trainer no longer has module '", name, "' as marked"));
    }
    const auto size = static_cast<Eigen::Index>(live.size());
    m->live->flat_values() = Eigen::Map<const Eigen::VectorXf>(live.data(), size);
    m->committed = Eigen::Map<const Eigen::VectorXf>(committed.data(), size);
  }
  uncommitted_.batches = mark.uncommitted_batches;
  uncommitted_.samples = mark.uncommitted_samples;
  uncommitted_.loss_sum = mark.uncommitted_loss_sum;
  return absl::OkStatus();
}

}  // namespace fedcl::device
