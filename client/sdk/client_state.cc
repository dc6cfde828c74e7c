// fedcl::Client's durable state: restoring it when a backbone loads, committing learning to the
// queue (bounded, oldest dropped first) and saving it (client/sdk/device_state_store.h).
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "client/sdk/memory_estimate.h"
#include "core/base/status_macros.h"
#include "proto/tensor_convert.h"

namespace fedcl {

using sdk::kDeviceStateFormatVersion;

namespace {

void ProgressToProto(const cl::LearnerProgress& p, v1::LearnerProgressState* out) {
  out->set_task(p.task);
  out->set_task_steps(p.task_steps);
  for (bool f : p.learned_classes) out->add_learned_classes(f);
  for (bool f : p.task_labels) out->add_task_labels(f);
  if (p.lae_offline.has_value()) {
    out->set_has_lae_offline(true);
    out->mutable_lae_offline()->Add(p.lae_offline->data(),
                                    p.lae_offline->data() + p.lae_offline->size());
  }
  for (int64_t r = 0; r < p.class_sums.rows(); ++r)
    for (int64_t c = 0; c < p.class_sums.cols(); ++c) out->add_class_sums(p.class_sums(r, c));
  out->mutable_class_counts()->Add(p.class_counts.begin(), p.class_counts.end());
}

// The shapes are checked by Learner::RestoreProgress; here only that the sums are whole rows.
absl::StatusOr<cl::LearnerProgress> ProgressFromProto(const v1::LearnerProgressState& in) {
  cl::LearnerProgress p;
  p.task = in.task();
  p.task_steps = in.task_steps();
  p.learned_classes.assign(in.learned_classes().begin(), in.learned_classes().end());
  p.task_labels.assign(in.task_labels().begin(), in.task_labels().end());
  if (in.has_lae_offline())
    p.lae_offline =
        Eigen::Map<const Eigen::VectorXf>(in.lae_offline().data(), in.lae_offline_size());
  p.class_counts.assign(in.class_counts().begin(), in.class_counts().end());
  const int64_t rows = static_cast<int64_t>(p.class_counts.size());
  if (rows > 0 || in.class_sums_size() > 0) {
    if (rows == 0 || in.class_sums_size() % rows != 0) {
      return absl::InvalidArgumentError(absl::StrCat("learner progress: ", in.class_sums_size(),
                                                     " class-sum values for ", rows, " classes"));
    }
    p.class_sums =
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
            in.class_sums().data(), rows, in.class_sums_size() / rows);
  }
  return p;
}

}  // namespace

int64_t Client::Impl::Record::bytes() const {
  int64_t n = 0;
  for (const Eigen::VectorXf& d : deltas) n += d.size() * int64_t{sizeof(float)};
  return n;
}

// Applies the stored state if it belongs to this backbone; otherwise the device starts from the
// learner's initial modules (and takes the server's at its next sync).
void Client::Impl::RestoreLocked() {
  if (!stored_.has_value()) return;
  v1::DeviceState state = *std::move(stored_);
  stored_.reset();
  if (state.backbone_digest() != backbone_digest_) {
    if (state.modules_size() > 0 || state.queue_size() > 0) {
      Log(LogLevel::kWarning,
          "the stored modules belong to another backbone: starting from the new backbone's");
    }
    return;
  }
  auto problem = [&](const std::string& what) {
    Log(LogLevel::kError, absl::StrCat("the stored device state does not fit the model (", what,
                                       "): starting from the backbone's modules"));
  };
  // SEMA first: its mixtures decide which modules there are.
  const bool sema = cl::IsSema(method_);
  if (sema && state.has_sema()) {
    if (absl::Status s = RestoreSemaLocked(state); !s.ok())
      return problem(std::string(s.message()));
  }
  app_tasks_ = state.app_tasks();
  learner_->set_task_at_growth(!app_tasks_);
  if (absl::Status s = learner_->SetTaskClasses(
          std::vector<int>(state.task_classes().begin(), state.task_classes().end()));
      !s.ok()) {
    return problem(std::string(s.message()));
  }
  // Decode everything else first; change nothing unless all of it fits.
  std::vector<Eigen::VectorXf> bases(modules_.size());
  std::vector<int64_t> versions(modules_.size(), -1);
  std::vector<std::string> server_names(modules_.size());
  std::vector<bool> descriptor_pending(modules_.size(), false);
  for (const v1::DeviceModule& stored : state.modules()) {
    const std::string& name = stored.base().name();
    Module* m = FindModuleByLiveNameLocked(name);
    if (m == nullptr) return problem(absl::StrCat("no module '", name, "'"));
    nn::ParameterSet values = *m->live;
    if (absl::Status s = proto::CopyValuesFromProto(stored.base(), &values); !s.ok())
      return problem(std::string(s.message()));
    const size_t i = static_cast<size_t>(m - modules_.data());
    bases[i] = values.flat_values();
    versions[i] = stored.version();
    server_names[i] = stored.server_name();
    descriptor_pending[i] = stored.descriptor_pending();
  }
  std::deque<Record> queue;
  for (const v1::QueuedDelta& q : state.queue()) {
    Record r;
    r.sequence = q.sequence();
    r.batches = q.batches();
    r.samples = q.samples();
    r.loss_sum = q.loss_sum();
    r.deltas.resize(modules_.size());
    for (size_t i = 0; i < modules_.size(); ++i)
      r.deltas[i] = Eigen::VectorXf::Zero(modules_[i].live->num_values());
    for (const v1::ParameterSet& d : q.deltas()) {
      Module* m = FindModuleByLiveNameLocked(d.name());
      if (m == nullptr)
        return problem(absl::StrCat("a queued delta for no module '", d.name(), "'"));
      nn::ParameterSet values = *m->live;
      if (absl::Status s = proto::CopyValuesFromProto(d, &values); !s.ok())
        return problem(std::string(s.message()));
      r.deltas[static_cast<size_t>(m - modules_.data())] = values.flat_values();
    }
    queue.push_back(std::move(r));
  }
  nn::ParameterSet adapted;
  if (state.has_adapted_backbone()) {
    adapted = learner_->model().backbone().parameters();
    if (absl::Status s = proto::CopyValuesFromProto(state.adapted_backbone(), &adapted); !s.ok())
      return problem(std::string(s.message()));
  }
  // The learner's own progress last: RestoreProgress checks it whole before changing anything.
  if (state.has_progress()) {
    absl::StatusOr<cl::LearnerProgress> progress = ProgressFromProto(state.progress());
    absl::Status s = progress.ok() ? learner_->RestoreProgress(*progress) : progress.status();
    if (!s.ok()) return problem(std::string(s.message()));
  }
  for (size_t i = 0; i < modules_.size(); ++i) {
    Module& m = modules_[i];
    if (bases[i].size() == 0) continue;  // not stored: keep the learner's initial values
    m.base = std::move(bases[i]);
    m.version = versions[i];
    m.descriptor_pending = descriptor_pending[i];
    // SEMA writes every module's server name, empty for an adapter the server has not taken.
    if (sema) {
      m.on_server = !server_names[i].empty();
      if (m.on_server) m.server_name = server_names[i];
    }
  }
  queue_ = std::move(queue);
  queue_bytes_ = 0;
  for (Module& m : modules_) m.committed = m.base;
  for (const Record& r : queue_) {
    queue_bytes_ += r.bytes();
    for (size_t i = 0; i < modules_.size(); ++i) modules_[i].committed += r.deltas[i];
  }
  for (Module& m : modules_) m.live->flat_values() = m.committed;
  if (state.has_adapted_backbone()) {
    learner_->model().backbone().parameters().flat_values() = adapted.flat_values();
    adapted_ = true;
    ++adapt_generation_;
  }
  next_sequence_ = std::max<uint64_t>(state.next_sequence(), 1);
  Log(LogLevel::kInfo,
      absl::StrCat("restored ", modules_.size(), " modules and ", queue_.size(), " queued deltas"));
}

absl::Status Client::Impl::CommitLocked() {
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

void Client::Impl::EnforceQueueBoundLocked() {
  // The newest record always stays: dropping it would drop the learning just done.
  while (queue_.size() > 1 && queue_bytes_ > options_.offline_queue_bytes) {
    Record& oldest = queue_.front();
    // Folded into base: the device keeps it until it re-bases, the server never sees it.
    for (size_t i = 0; i < modules_.size(); ++i) modules_[i].base += oldest.deltas[i];
    queue_bytes_ -= oldest.bytes();
    queue_.pop_front();
    life_.set_queue_records_dropped(life_.queue_records_dropped() + 1);
  }
}

absl::Status Client::Impl::SaveLocked() {
  FEDCL_RETURN_IF_ERROR(CommitLocked());
  v1::DeviceState state = life_;
  state.clear_modules();
  state.clear_queue();
  state.clear_adapted_backbone();
  state.set_format_version(kDeviceStateFormatVersion);
  state.set_client_id(options_.client_id);
  state.set_method(options_.method);
  state.set_backbone_digest(backbone_digest_);
  if (enrolled_round_.has_value()) state.set_enrolled_round(*enrolled_round_);
  state.set_next_sequence(next_sequence_);
  nn::ParameterSet scratch;
  for (const Module& m : modules_) {
    scratch = *m.live;
    scratch.DropGradients();
    v1::DeviceModule* stored = state.add_modules();
    stored->set_version(m.version);
    if (m.on_server) stored->set_server_name(m.server_name);
    stored->set_descriptor_pending(m.descriptor_pending);
    scratch.flat_values() = m.base;
    proto::ToProto(scratch, stored->mutable_base());
  }
  for (const Record& r : queue_) {
    v1::QueuedDelta* q = state.add_queue();
    q->set_sequence(r.sequence);
    q->set_batches(r.batches);
    q->set_samples(r.samples);
    q->set_loss_sum(r.loss_sum);
    for (size_t i = 0; i < modules_.size(); ++i) {
      scratch = *modules_[i].live;
      scratch.DropGradients();
      scratch.flat_values() = r.deltas[i];
      proto::ToProto(scratch, q->add_deltas());
    }
  }
  if (adapted_)
    proto::ToProto(learner_->model().backbone().parameters(), state.mutable_adapted_backbone());
  state.clear_sema();
  state.clear_pending_proposals();
  state.clear_task_classes();
  state.set_app_tasks(app_tasks_);
  if (learner_ != nullptr)
    for (int c : learner_->TaskClasses()) state.add_task_classes(c);
  state.clear_progress();
  if (learner_ != nullptr) ProgressToProto(learner_->ExportProgress(), state.mutable_progress());
  if (learner_ != nullptr && cl::IsSema(method_)) FEDCL_RETURN_IF_ERROR(SaveSemaLocked(state));
  if (learner_ == nullptr && stored_.has_value()) state = *stored_;  // nothing loaded yet
  return store_.Save(state);
}

absl::Status Client::Impl::Save() {
  std::lock_guard<std::mutex> lock(model_mu_);
  return SaveLocked();
}

}  // namespace fedcl
