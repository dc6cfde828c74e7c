// fedcl::Client with a self-expanding learner (method "sema"/"sema_replay"): the modules that
// appear while the device runs — adapters it grows, and adapters other devices grew that the
// server's pool sends it — and SEMA's private state in the durable device state.
//
// A grown adapter becomes a module at once (its learning is queued like any other's) but has no
// server name until its proposal is made, at the first sync after its growth has trained its
// descriptor, which the proposal carries with the trained adapter: then the server founds a
// module with it (version 0, the values proposed) or joins it to a module another device founded
// for the same shift, which the device then takes as it is (its own growth started from other
// values, so that learning is dropped). A pool at capacity or a refused proposal leaves the
// adapter on the device only. Pooled adapters are downloaded with their descriptors, and the
// device's detection uses them like its own.
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "core/base/status_macros.h"
#include "proto/tensor_convert.h"

namespace fedcl {
namespace {

std::vector<float> Floats(const google::protobuf::RepeatedField<float>& f) {
  return {f.begin(), f.end()};
}

template <typename Container>
void AddFloats(const Container& values, google::protobuf::RepeatedField<float>* out) {
  out->Add(values.data(), values.data() + values.size());
}

// A row-major matrix from `values`; InvalidArgument unless there are rows × cols of them.
absl::StatusOr<nn::Matrix> MatrixFrom(const google::protobuf::RepeatedField<float>& values,
                                      int64_t rows, int64_t cols, absl::string_view what) {
  if (values.size() != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has ", values.size(), " values, not ", rows, "×", cols));
  }
  return nn::Matrix(Eigen::Map<const nn::Matrix>(values.data(), rows, cols));
}

}  // namespace

void Client::Impl::AddModuleLocked(nn::ParameterSet* live, std::string server_name, int64_t version,
                                   const Eigen::VectorXf& base, bool on_server) {
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

bool Client::Impl::ProposalPendingLocked(const Module& m) {
  for (const cl::ModuleProposal& p : pending_)
    if (learner_->Expert(p.block, p.index) == m.live) return true;
  return false;
}

void Client::Impl::TakeGrowthLocked() {
  for (cl::ModuleProposal& p : learner_->TakeProposals()) {
    nn::ParameterSet* live = learner_->Expert(p.block, p.index);
    if (live == nullptr) continue;  // cannot happen: the learner just grew it
    AddModuleLocked(live, live->name(), -1, p.expert.flat_values(), /*on_server=*/false);
    modules_.back().descriptor_pending = true;
    Log(LogLevel::kInfo, absl::StrCat("grew adapter ", p.index, " at block ", p.block,
                                      ": the data shifted; it is proposed at the next sync"));
    pending_.push_back(std::move(p));
  }
}

absl::Status Client::Impl::InstallPooledExpertLocked(client::DownloadedModule& module) {
  // Under the server's name: sets keep the name their founder gave them ("block2/e1"), which
  // another adapter on this device may carry too, and the stored state finds sets by name.
  module.values.set_name(module.spec.name);
  absl::StatusOr<int> index =
      learner_->AddPooledExpert(module.spec.block, module.values,
                                module.descriptor.has_value() ? &*module.descriptor : nullptr);
  if (!index.ok() && module.descriptor.has_value()) {
    // A descriptor this learner cannot use (another bottleneck) or hold (the memory budget):
    // run the adapter without it.
    Log(LogLevel::kWarning, absl::StrCat("the pool's adapter '", module.spec.name,
                                         "' comes with a descriptor this device cannot use (",
                                         index.status().message(), "); detection ignores it"));
    descriptor_refused_.insert(module.spec.name);
    index = learner_->AddPooledExpert(module.spec.block, module.values);
  }
  if (!index.ok()) {
    // At the growth budget, or a module this learner cannot run (another block or layout):
    // the device runs without it and syncs the rest.
    not_installed_.insert(module.spec.name);
    Log(LogLevel::kWarning, absl::StrCat("not running the pool's adapter '", module.spec.name,
                                         "': ", index.status().message()));
    return absl::OkStatus();
  }
  nn::ParameterSet* live = learner_->Expert(module.spec.block, *index);
  AddModuleLocked(live, module.spec.name, module.version, module.values.flat_values());
  Log(LogLevel::kInfo, absl::StrCat("runs the pool's adapter '", module.spec.name, "' at block ",
                                    module.spec.block));
  return absl::OkStatus();
}

absl::Status Client::Impl::ProposeGrownLocked(std::unique_lock<std::mutex>& lock, int64_t round,
                                              bool* taken) {
  *taken = false;
  while (!pending_.empty()) {
    fl::ModuleProposal proposal;
    proposal.client = options_.client_id;
    proposal.round = round;
    proposal.block = pending_.front().block;
    proposal.spec.role = fl::ModuleRole::kExpert;
    proposal.spec.block = proposal.block;
    proposal.values = pending_.front().expert;
    proposal.statistics = {pending_.front().mean, pending_.front().variance};
    const int index = pending_.front().index;
    lock.unlock();  // no lock across a network call
    absl::StatusOr<fl::ProposalResult> result = transport_->ProposeModule(proposal);
    lock.lock();
    Module* m = nullptr;
    if (nn::ParameterSet* live = learner_->Expert(proposal.block, index); live != nullptr)
      m = FindModuleByLiveLocked(live);
    // Refusals (the pool at capacity, a proposal it cannot take) keep the adapter on the
    // device; anything else leaves the proposal pending for the next sync.
    const bool refused = absl::IsResourceExhausted(result.status()) ||
                         absl::IsInvalidArgument(result.status()) ||
                         absl::IsFailedPrecondition(result.status());
    if (!result.ok() && !refused) return result.status();
    pending_.erase(pending_.begin());
    if (m == nullptr) continue;
    if (!result.ok()) {
      // The pool is full, or refused this adapter: it serves this device only.
      Log(LogLevel::kWarning,
          absl::StrCat("the server did not take the adapter grown at block ", proposal.block, " (",
                       result.status().message(), "); it stays on this device"));
      continue;
    }
    if (FindModuleLocked(result->name) != nullptr) {
      // It joined a module this device already runs: one copy syncs, this one stays local.
      Log(LogLevel::kInfo, absl::StrCat("the adapter grown at block ", proposal.block, " joined '",
                                        result->name, "', which this device already runs"));
      continue;
    }
    m->server_name = result->name;
    m->on_server = true;
    *taken = true;
    if (result->merged) {  // the group's module arrives with the next GetWork; re-based onto then
      Log(LogLevel::kInfo, absl::StrCat("the adapter grown at block ", proposal.block, " joined '",
                                        result->name, "' (divergence ", result->divergence, ")"));
    } else {
      m->version = 0;  // the module the server founded holds the proposed values
      Log(LogLevel::kInfo, absl::StrCat("the adapter grown at block ", proposal.block,
                                        " founded the pool's '", result->name, "'"));
    }
  }
  return absl::OkStatus();
}

std::pair<int, int> Client::Impl::ExpertSlotLocked(const Module& m) {
  for (const cl::Learner::ExpertRef& e : learner_->Experts())
    if (e.values == m.live) return {e.block, e.index};
  return {-1, -1};
}

absl::Status Client::Impl::AttachDescriptorsLocked(std::unique_lock<std::mutex>& lock) {
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (!modules_[i].descriptor_pending || !modules_[i].on_server) continue;
    const auto [block, index] = ExpertSlotLocked(modules_[i]);
    std::optional<nn::ParameterSet> descriptor = learner_->ExpertDescriptor(block, index);
    if (!descriptor.has_value()) continue;  // the growth still trains it
    const std::string name = modules_[i].server_name;
    lock.unlock();  // no lock across a network call
    absl::StatusOr<bool> attached =
        transport_->AttachDescriptor(options_.client_id, name, *descriptor);
    lock.lock();
    const bool refused =
        absl::IsNotFound(attached.status()) || absl::IsInvalidArgument(attached.status());
    if (!attached.ok() && !refused) {
      if (sdk::IsTransient(attached.status())) return attached.status();
      // A server that stopped after a storage failure, or one without the RPC: try again later.
      Log(LogLevel::kDebug,
          absl::StrCat("the descriptor of '", name, "' waits: ", attached.status().message()));
      continue;
    }
    Module* m = FindModuleLocked(name);  // the modules may have changed while unlocked
    if (m == nullptr) continue;
    m->descriptor_pending = false;
    if (!attached.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("the pool did not take the descriptor of '", name,
                                           "': ", attached.status().message()));
    } else {
      Log(LogLevel::kInfo, *attached ? absl::StrCat("sent the descriptor of '", name, "'")
                                     : absl::StrCat("'", name, "' already had a descriptor"));
    }
  }
  return absl::OkStatus();
}

// ---- Durable state ------------------------------------------------------------------------

absl::Status Client::Impl::SaveSemaLocked(v1::DeviceState& state) const {
  FEDCL_ASSIGN_OR_RETURN(cl::SemaState sema, learner_->ExportSemaState());
  v1::SemaDeviceState* out = state.mutable_sema();
  out->set_growth_steps_left(sema.growth_steps_left);
  for (bool f : sema.learned_classes) out->add_learned_classes(f);
  for (bool f : sema.task_labels) out->add_task_labels(f);
  for (const cl::SemaBlockState& b : sema.blocks) {
    v1::SemaBlock* block = out->add_blocks();
    block->set_block(b.block);
    block->set_growing_index(b.growing_index);
    AddFloats(b.growth_buffer, block->mutable_growth_buffer());
    for (const cl::SemaAdapterState& a : b.adapters) {
      v1::SemaAdapter* adapter = block->add_adapters();
      proto::ToProto(a.expert, adapter->mutable_expert());
      adapter->set_has_descriptor(a.has_descriptor);
      if (a.has_descriptor) {
        AddFloats(a.encoder, adapter->mutable_encoder());  // nn::Matrix is row-major
        AddFloats(a.encoder_bias, adapter->mutable_encoder_bias());
        AddFloats(a.decoder, adapter->mutable_decoder());
        AddFloats(a.decoder_bias, adapter->mutable_decoder_bias());
        AddFloats(a.losses, adapter->mutable_losses());
        adapter->set_records_frozen(a.records_frozen);
      }
      AddFloats(a.anchor_mean, adapter->mutable_anchor_mean());
      AddFloats(a.anchor_var, adapter->mutable_anchor_var());
    }
  }
  for (const cl::ModuleProposal& p : pending_) {
    v1::PendingProposal* out_p = state.add_pending_proposals();
    out_p->set_block(p.block);
    out_p->set_index(p.index);
    proto::ToProto(p.expert, out_p->mutable_expert());
    AddFloats(p.mean, out_p->mutable_statistics_mean());
    AddFloats(p.variance, out_p->mutable_statistics_variance());
  }
  return absl::OkStatus();
}

absl::Status Client::Impl::RestoreSemaLocked(const v1::DeviceState& state) {
  const int dim = config_.vit.dim;
  const int r = learner_->options().descriptor_bottleneck;
  cl::SemaState sema;
  sema.growth_steps_left = state.sema().growth_steps_left();
  sema.learned_classes.assign(state.sema().learned_classes().begin(),
                              state.sema().learned_classes().end());
  sema.task_labels.assign(state.sema().task_labels().begin(), state.sema().task_labels().end());
  for (const v1::SemaBlock& b : state.sema().blocks()) {
    cl::SemaBlockState& block = sema.blocks.emplace_back();
    block.block = b.block();
    block.growing_index = b.growing_index();
    FEDCL_ASSIGN_OR_RETURN(block.growth_buffer,
                           MatrixFrom(b.growth_buffer(), b.growth_buffer_size() / std::max(dim, 1),
                                      dim, "a growth buffer"));
    for (const v1::SemaAdapter& a : b.adapters()) {
      cl::SemaAdapterState& adapter = block.adapters.emplace_back();
      FEDCL_ASSIGN_OR_RETURN(adapter.expert, proto::FromProto(a.expert()));
      adapter.has_descriptor = a.has_descriptor();
      if (adapter.has_descriptor) {
        FEDCL_ASSIGN_OR_RETURN(adapter.encoder, MatrixFrom(a.encoder(), r, dim, "an encoder"));
        FEDCL_ASSIGN_OR_RETURN(adapter.decoder, MatrixFrom(a.decoder(), dim, r, "a decoder"));
        FEDCL_ASSIGN_OR_RETURN(nn::Matrix eb, MatrixFrom(a.encoder_bias(), r, 1, "a bias"));
        FEDCL_ASSIGN_OR_RETURN(nn::Matrix db, MatrixFrom(a.decoder_bias(), dim, 1, "a bias"));
        adapter.encoder_bias = eb.col(0);
        adapter.decoder_bias = db.col(0);
        adapter.losses = Floats(a.losses());
        adapter.records_frozen = a.records_frozen();
      }
      adapter.anchor_mean = Floats(a.anchor_mean());
      adapter.anchor_var = Floats(a.anchor_var());
    }
  }
  std::vector<cl::ModuleProposal> pending;
  for (const v1::PendingProposal& p : state.pending_proposals()) {
    cl::ModuleProposal& proposal = pending.emplace_back();
    proposal.block = p.block();
    proposal.index = p.index();
    FEDCL_ASSIGN_OR_RETURN(proposal.expert, proto::FromProto(p.expert()));
    proposal.mean = Floats(p.statistics_mean());
    proposal.variance = Floats(p.statistics_variance());
  }
  FEDCL_RETURN_IF_ERROR(learner_->RestoreSemaState(sema));
  pending_ = std::move(pending);
  // The learner's sets changed: one module per set, named as the set until the stored modules
  // (RestoreLocked) give their server names. Should those not decode, the device keeps these
  // values, its learning included, as its base.
  modules_.clear();
  queue_.clear();
  for (nn::ParameterSet* set : learner_->SharedModules())
    AddModuleLocked(set, set->name(), -1, set->flat_values());
  return absl::OkStatus();
}

}  // namespace fedcl
