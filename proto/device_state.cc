#include "proto/device_state.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/cl/methods/sema/sema_method.h"
#include "proto/checkpoint.h"
#include "proto/tensor_convert.h"

namespace fedcl::proto {
namespace {

// A flat vector as one tensor "values", named `name`.
void FlatToProto(const std::string& name, const std::vector<float>& values, v1::ParameterSet* out) {
  nn::ParameterSet set(name);
  set.Add("values", {static_cast<int64_t>(values.size())}, false);
  if (!values.empty()) {
    set.flat_values() = Eigen::Map<const Eigen::VectorXf>(values.data(), values.size());
  }
  ToProto(set, out);
}

// Every value of a set message, in order, whatever its tensors (formats 1 and 2).
absl::StatusOr<std::vector<float>> FlatFromProto(const v1::ParameterSet& message) {
  FEDCL_ASSIGN_OR_RETURN(nn::ParameterSet set, FromProto(message));
  const Eigen::VectorXf& v = set.flat_values();
  return std::vector<float>(v.data(), v.data() + v.size());
}

template <typename Field>
std::vector<float> Floats(const Field& f) {
  return {f.begin(), f.end()};
}

absl::Status ModulesFromProto(const v1::DeviceState& in, device::SessionState& out) {
  for (const v1::DeviceModule& stored : in.modules()) {
    device::SessionModuleState& m = out.modules.emplace_back();
    m.name = stored.base().name();
    m.server_name = stored.server_name();
    // Format 1 wrote the server name only when it differed from the set's (SEMA's pool names).
    if (in.format_version() < 2 && m.server_name.empty() && in.method() != "sema" &&
        in.method() != "sema_replay") {
      m.server_name = m.name;
    }
    m.version = stored.version();
    FEDCL_ASSIGN_OR_RETURN(m.base, FlatFromProto(stored.base()));
    m.descriptor_pending = stored.descriptor_pending();
    m.residual = Floats(stored.residual());
    m.adopted = stored.adopted();
    if (m.adopted) {
      m.spec.name = m.server_name;
      FEDCL_ASSIGN_OR_RETURN(m.spec.role, peft::ParseModuleRole(stored.role()));
      if (m.spec.role == peft::ModuleRole::kPet) {
        FEDCL_ASSIGN_OR_RETURN(m.spec.pet, FromProto(stored.pet()));
      }
      m.spec.block = stored.block();
    }
    for (size_t k = 0; k + 1 < out.modules.size(); ++k) {
      if (out.modules[k].name == m.name) {
        return absl::InvalidArgumentError(absl::StrCat("module '", m.name, "' is stored twice"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status QueueFromProto(const v1::DeviceState& in, device::SessionState& out) {
  for (const v1::QueuedDelta& q : in.queue()) {
    device::SessionRecordState& r = out.queue.emplace_back();
    r.sequence = q.sequence();
    r.batches = q.batches();
    r.samples = q.samples();
    r.loss_sum = q.loss_sum();
    if (r.batches < 0 || r.samples < 0 || !std::isfinite(r.loss_sum)) {
      return absl::InvalidArgumentError(
          absl::StrCat("queued record ", r.sequence, " has bad counters"));
    }
    // Deltas are matched to modules by name; a module without one has a zero delta.
    for (const device::SessionModuleState& m : out.modules)
      r.deltas.emplace_back(m.base.size(), 0.0f);
    for (const v1::ParameterSet& d : q.deltas()) {
      size_t k = 0;
      while (k < out.modules.size() && out.modules[k].name != d.name()) ++k;
      if (k == out.modules.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("a queued delta for no stored module '", d.name(), "'"));
      }
      FEDCL_ASSIGN_OR_RETURN(r.deltas[k], FlatFromProto(d));
    }
  }
  return absl::OkStatus();
}

absl::Status ProposalsFromProto(const v1::DeviceState& in, device::SessionState& out) {
  for (const v1::PendingProposal& p : in.pending_proposals()) {
    cl::ModuleProposal& proposal = out.pending_proposals.emplace_back();
    proposal.block = p.block();
    proposal.index = p.index();
    FEDCL_ASSIGN_OR_RETURN(proposal.expert, FromProto(p.expert()));
    proposal.mean = Floats(p.statistics_mean());
    proposal.variance = Floats(p.statistics_variance());
  }
  return absl::OkStatus();
}

void MethodStateToProto(const cl::MethodState& state, v1::MethodStateMessage* out) {
  for (const auto& [name, values] : state.floats) {
    v1::MethodStateMessage::Floats* f = out->add_floats();
    f->set_name(name);
    f->mutable_values()->Add(values.begin(), values.end());
  }
  for (const auto& [name, values] : state.ints) {
    v1::MethodStateMessage::Ints* i = out->add_ints();
    i->set_name(name);
    i->mutable_values()->Add(values.begin(), values.end());
  }
  for (const auto& [name, value] : state.strings) {
    v1::MethodStateMessage::Text* t = out->add_strings();
    t->set_name(name);
    t->set_value(value);
  }
}

absl::StatusOr<cl::MethodState> MethodStateFromProto(const v1::MethodStateMessage& in) {
  cl::MethodState state;
  auto twice = [](const std::string& name) {
    return absl::InvalidArgumentError(absl::StrCat("method state array '", name, "' twice"));
  };
  for (const auto& f : in.floats())
    if (!state.floats.emplace(f.name(), Floats(f.values())).second) return twice(f.name());
  for (const auto& i : in.ints()) {
    if (!state.ints.emplace(i.name(), std::vector<int64_t>(i.values().begin(), i.values().end()))
             .second)
      return twice(i.name());
  }
  for (const auto& t : in.strings())
    if (!state.strings.emplace(t.name(), t.value()).second) return twice(t.name());
  return state;
}

// Format 1's SEMA mixtures as SEMA's typed state (its method encodes them).
absl::StatusOr<cl::MethodState> LegacySemaState(const v1::SemaDeviceState& in, int dim) {
  cl::SemaState sema;
  sema.growth_steps_left = in.growth_steps_left();
  for (const v1::SemaBlock& b : in.blocks()) {
    cl::SemaBlockState& block = sema.blocks.emplace_back();
    block.block = b.block();
    block.growing_index = b.growing_index();
    const int64_t rows = dim > 0 ? b.growth_buffer_size() / dim : 0;
    block.growth_buffer = Eigen::Map<const nn::Matrix>(b.growth_buffer().data(), rows, dim);
    for (const v1::SemaAdapter& a : b.adapters()) {
      cl::SemaAdapterState& adapter = block.adapters.emplace_back();
      FEDCL_ASSIGN_OR_RETURN(adapter.expert, FromProto(a.expert()));
      adapter.has_descriptor = a.has_descriptor();
      if (adapter.has_descriptor) {
        const int64_t r = a.encoder_bias_size();
        if (r * dim != a.encoder_size() || r * dim != a.decoder_size()) {
          return absl::InvalidArgumentError("a stored SEMA descriptor has the wrong size");
        }
        adapter.encoder = Eigen::Map<const nn::Matrix>(a.encoder().data(), r, dim);
        adapter.decoder = Eigen::Map<const nn::Matrix>(a.decoder().data(), dim, r);
        adapter.encoder_bias = Eigen::Map<const Eigen::VectorXf>(a.encoder_bias().data(), r);
        adapter.decoder_bias =
            Eigen::Map<const Eigen::VectorXf>(a.decoder_bias().data(), a.decoder_bias_size());
        adapter.losses = Floats(a.losses());
        adapter.records_frozen = a.records_frozen();
      }
      adapter.anchor_mean = Floats(a.anchor_mean());
      adapter.anchor_var = Floats(a.anchor_var());
    }
  }
  return cl::SemaStateToMethodState(sema);
}

// Format 1's LAE and SimpleCIL progress fields as their methods' state.
cl::MethodState LegacyProgressState(const v1::LearnerProgressState& in) {
  cl::MethodState state;
  if (in.has_lae_offline()) state.floats["offline"] = Floats(in.lae_offline());
  if (in.class_counts_size() > 0 || in.class_sums_size() > 0) {
    state.floats["class_sums"] = Floats(in.class_sums());
    state.ints["class_counts"].assign(in.class_counts().begin(), in.class_counts().end());
  }
  return state;
}

}  // namespace

void SessionStateToProto(const device::SessionState& state, v1::DeviceState* out) {
  out->clear_modules();
  for (const device::SessionModuleState& m : state.modules) {
    v1::DeviceModule* stored = out->add_modules();
    stored->set_version(m.version);
    FlatToProto(m.name, m.base, stored->mutable_base());
    stored->set_server_name(m.server_name);
    stored->set_descriptor_pending(m.descriptor_pending);
    stored->mutable_residual()->Add(m.residual.begin(), m.residual.end());
    stored->set_adopted(m.adopted);
    if (m.adopted) {
      stored->set_role(std::string(peft::ModuleRoleName(m.spec.role)));
      if (m.spec.role == peft::ModuleRole::kPet) ToProto(m.spec.pet, stored->mutable_pet());
      stored->set_block(m.spec.block);
    }
  }
  out->clear_queue();
  for (const device::SessionRecordState& r : state.queue) {
    v1::QueuedDelta* q = out->add_queue();
    q->set_sequence(r.sequence);
    q->set_batches(r.batches);
    q->set_samples(r.samples);
    q->set_loss_sum(r.loss_sum);
    for (size_t k = 0; k < r.deltas.size(); ++k)
      FlatToProto(state.modules[k].name, r.deltas[k], q->add_deltas());
  }
  out->set_next_sequence(state.next_sequence);
  out->clear_in_flight();
  if (state.in_flight.has_value()) {
    v1::InFlightSubmission* f = out->mutable_in_flight();
    f->set_round(state.in_flight->round);
    f->set_last_sequence(state.in_flight->last_sequence);
    for (const fl::ModuleVersion& v : state.in_flight->modules) {
      v1::InFlightSubmission::Base* base = f->add_modules();
      base->set_name(v.name);
      base->set_version(v.version);
    }
    for (const fl::CompressionSpec& spec : state.in_flight->compression)
      f->add_compression(fl::CompressionSpecText(spec));
  }
  out->clear_pending_proposals();
  for (const cl::ModuleProposal& p : state.pending_proposals) {
    v1::PendingProposal* stored = out->add_pending_proposals();
    stored->set_block(p.block);
    stored->set_index(p.index);
    ToProto(p.expert, stored->mutable_expert());
    stored->mutable_statistics_mean()->Add(p.mean.begin(), p.mean.end());
    stored->mutable_statistics_variance()->Add(p.variance.begin(), p.variance.end());
  }
  out->clear_not_installed();
  for (const std::string& name : state.not_installed) out->add_not_installed(name);
  out->clear_descriptor_refused();
  for (const std::string& name : state.descriptor_refused) out->add_descriptor_refused(name);
  if (state.enrolled_round.has_value()) {
    out->set_enrolled_round(*state.enrolled_round);
  } else {
    out->clear_enrolled_round();
  }
  out->set_submissions(state.submissions);
  out->set_rounds_closed(state.rounds_closed);
  out->set_updates_dropped(state.updates_dropped);
  out->set_queue_records_dropped(state.records_dropped);
  out->set_last_round(state.last_submitted_round);
}

absl::StatusOr<device::SessionState> SessionStateFromProto(const v1::DeviceState& in) {
  device::SessionState out;
  FEDCL_RETURN_IF_ERROR(ModulesFromProto(in, out));
  FEDCL_RETURN_IF_ERROR(QueueFromProto(in, out));
  FEDCL_RETURN_IF_ERROR(ProposalsFromProto(in, out));
  out.next_sequence = in.next_sequence();
  if (in.has_in_flight()) {
    device::InFlightSubmission f;
    f.round = in.in_flight().round();
    f.last_sequence = in.in_flight().last_sequence();
    for (const auto& base : in.in_flight().modules())
      f.modules.push_back({base.name(), base.version()});
    for (const std::string& text : in.in_flight().compression()) {
      absl::StatusOr<fl::CompressionSpec> spec = fl::ParseCompressionSpec(text);
      if (!spec.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the submission in flight: ", spec.status().message()));
      }
      f.compression.push_back(*spec);
    }
    if (!f.compression.empty() && f.compression.size() != f.modules.size()) {
      return absl::InvalidArgumentError(absl::StrCat("the submission in flight has ",
                                                     f.compression.size(), " compressions for ",
                                                     f.modules.size(), " modules"));
    }
    out.in_flight = std::move(f);
  }
  out.not_installed.insert(in.not_installed().begin(), in.not_installed().end());
  out.descriptor_refused.insert(in.descriptor_refused().begin(), in.descriptor_refused().end());
  if (in.has_enrolled_round()) out.enrolled_round = in.enrolled_round();
  if (in.submissions() < 0 || in.rounds_closed() < 0 || in.updates_dropped() < 0 ||
      in.queue_records_dropped() < 0) {
    return absl::InvalidArgumentError("the device state has negative counters");
  }
  out.submissions = in.submissions();
  out.rounds_closed = in.rounds_closed();
  out.updates_dropped = in.updates_dropped();
  out.records_dropped = in.queue_records_dropped();
  out.last_submitted_round =
      in.format_version() < 2 && in.submissions() == 0 ? -1 : in.last_round();
  return out;
}

void ProgressToProto(const cl::LearnerProgress& p, v1::LearnerProgressState* out) {
  out->Clear();
  out->set_task(p.task);
  out->set_task_steps(p.task_steps);
  for (bool f : p.learned_classes) out->add_learned_classes(f);
  for (bool f : p.task_labels) out->add_task_labels(f);
  MethodStateToProto(p.method, out->mutable_method());
}

absl::StatusOr<cl::LearnerProgress> ProgressFromProto(const v1::DeviceState& in, int model_dim) {
  const v1::LearnerProgressState& stored = in.progress();
  cl::LearnerProgress p;
  p.task = stored.task();
  p.task_steps = stored.task_steps();
  p.learned_classes.assign(stored.learned_classes().begin(), stored.learned_classes().end());
  p.task_labels.assign(stored.task_labels().begin(), stored.task_labels().end());
  if (in.format_version() >= 2) {
    FEDCL_ASSIGN_OR_RETURN(p.method, MethodStateFromProto(stored.method()));
  } else if (in.has_sema()) {
    FEDCL_ASSIGN_OR_RETURN(p.method, LegacySemaState(in.sema(), model_dim));
  } else {
    p.method = LegacyProgressState(stored);
  }
  if (!in.has_progress() && in.format_version() < 2) p.task = -1;
  return p;
}

v1::DeviceState EncodeDeviceState(uint64_t client_id, const std::string& method,
                                  const std::string& backbone_digest,
                                  const device::DeviceSession& session, cl::Learner& learner) {
  v1::DeviceState state;
  state.set_format_version(2);
  state.set_client_id(client_id);
  state.set_method(method);
  state.set_backbone_digest(backbone_digest);
  SessionStateToProto(session.ExportStateLocked(), &state);
  ProgressToProto(learner.ExportProgress(), state.mutable_progress());
  for (int c : learner.TaskClasses()) state.add_task_classes(c);
  return state;
}

absl::Status RestoreDeviceState(const v1::DeviceState& state, cl::Learner& learner,
                                device::DeviceSession& session) {
  const nn::ModelConfig& config = learner.model().config();
  const int dim = config.backbone == nn::BackboneKind::kVit ? config.vit.dim : 0;
  FEDCL_ASSIGN_OR_RETURN(cl::LearnerProgress progress, ProgressFromProto(state, dim));
  FEDCL_ASSIGN_OR_RETURN(device::SessionState stored, SessionStateFromProto(state));
  FEDCL_RETURN_IF_ERROR(learner.RestoreProgress(progress));
  FEDCL_RETURN_IF_ERROR(learner.SetTaskClasses(
      std::vector<int>(state.task_classes().begin(), state.task_classes().end())));
  return session.RestoreStateLocked(stored);
}

}  // namespace fedcl::proto
