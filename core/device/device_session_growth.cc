// DeviceSession with a self-expanding trainer (SEMA): the modules that appear while the device
// runs — adapters it grows, proposed to the server's pool, and adapters other devices grew that
// the pool sends it — and which downloads a sync makes (the contract is in device_session.h).
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/device/device_session.h"

namespace fedcl::device {

bool DeviceSession::WantsDownloadLocked(const fl::ModuleInfo& info, bool* with_descriptor) {
  *with_descriptor = false;
  if (not_installed_.contains(info.spec.name)) return false;
  cl::ExpansionHooks* hooks = trainer_.expansion();
  Module* held = FindLocked(info.spec.name);
  const bool pooled = info.spec.role == fl::ModuleRole::kExpert && hooks != nullptr;
  // A pooled adapter comes with its descriptor, for detection: when it is new to this device,
  // and when the device runs it without one and the pool now has it.
  bool descriptor_wanted = pooled && info.has_descriptor && held != nullptr &&
                           !held->descriptor_pending &&
                           !descriptor_refused_.contains(info.spec.name);
  if (descriptor_wanted) {
    const auto [block, index] = hooks->SlotOf(held->live);
    descriptor_wanted = !hooks->ExpertHasDescriptor(block, index);
  }
  if (!info.download && !descriptor_wanted) return false;
  if (held == nullptr && !pooled && !trainer_.CanAdopt(info.spec)) {
    Log(base::LogLevel::kDebug, absl::StrCat("the server's module '", info.spec.name,
                                             "' is not one this device's method runs"));
    return false;
  }
  *with_descriptor = pooled && (held == nullptr || descriptor_wanted);
  return true;
}

bool DeviceSession::ProposalPendingLocked(const Module& m) {
  cl::ExpansionHooks* hooks = trainer_.expansion();
  if (hooks == nullptr) return false;
  for (const cl::ModuleProposal& p : pending_)
    if (hooks->Expert(p.block, p.index) == m.live) return true;
  return false;
}

void DeviceSession::TakeGrowthLocked() {
  cl::ExpansionHooks* hooks = trainer_.expansion();
  for (cl::ModuleProposal& p : hooks->TakeProposals()) {
    nn::ParameterSet* live = hooks->Expert(p.block, p.index);
    if (live == nullptr) continue;  // cannot happen: the trainer just grew it
    AddModuleLocked(live, live->name(), -1, p.expert.flat_values(), /*on_server=*/false);
    modules_.back().descriptor_pending = true;
    Log(base::LogLevel::kInfo, absl::StrCat("grew adapter ", p.index, " at block ", p.block,
                                            ": the data shifted; it is proposed at the next sync"));
    pending_.push_back(std::move(p));
  }
}

absl::Status DeviceSession::InstallPooledExpertLocked(DownloadedModule& module) {
  cl::ExpansionHooks* hooks = trainer_.expansion();
  // Under the server's name: sets keep the name their founder gave them ("block2/e1"), which
  // another adapter on this device may carry too, and the stored state finds sets by name.
  module.values.set_name(module.spec.name);
  absl::StatusOr<int> index =
      hooks->AddPooledExpert(module.spec.block, module.values,
                             module.descriptor.has_value() ? &*module.descriptor : nullptr);
  if (!index.ok() && module.descriptor.has_value()) {
    // A descriptor this trainer cannot use (another bottleneck) or hold (the memory budget):
    // run the adapter without it.
    Log(base::LogLevel::kWarning,
        absl::StrCat("the pool's adapter '", module.spec.name,
                     "' comes with a descriptor this device cannot use (", index.status().message(),
                     "); detection ignores it"));
    descriptor_refused_.insert(module.spec.name);
    index = hooks->AddPooledExpert(module.spec.block, module.values, nullptr);
  }
  if (!index.ok()) {
    // At the growth budget, or a module this trainer cannot run (another block or layout): the
    // device runs without it and syncs the rest.
    not_installed_.insert(module.spec.name);
    Log(base::LogLevel::kWarning, absl::StrCat("not running the pool's adapter '", module.spec.name,
                                               "': ", index.status().message()));
    return absl::OkStatus();
  }
  nn::ParameterSet* live = hooks->Expert(module.spec.block, *index);
  AddModuleLocked(live, module.spec.name, module.version, module.values.flat_values(), true);
  Log(base::LogLevel::kInfo, absl::StrCat("runs the pool's adapter '", module.spec.name,
                                          "' at block ", module.spec.block));
  return absl::OkStatus();
}

absl::Status DeviceSession::ProposeGrownLocked(std::unique_lock<std::mutex>& lock, int64_t round,
                                               bool* taken) {
  cl::ExpansionHooks* hooks = trainer_.expansion();
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
    lock.unlock();  // no lock across a port call
    absl::StatusOr<fl::ProposalResult> result = env_.port->ProposeModule(proposal);
    lock.lock();
    Module* m = nullptr;
    if (nn::ParameterSet* live = hooks->Expert(proposal.block, index); live != nullptr)
      m = FindByLiveLocked(live);
    // Refusals (the pool at capacity, a proposal it cannot take) keep the adapter on the
    // device; anything else leaves the proposal pending for the next sync.
    const bool refused = absl::IsResourceExhausted(result.status()) ||
                         absl::IsInvalidArgument(result.status()) ||
                         absl::IsFailedPrecondition(result.status());
    if (!result.ok() && !refused) return result.status();
    if (result.ok()) counters_.growth_bytes_uploaded += proposal.values.num_values() * 4;
    pending_.erase(pending_.begin());
    if (m == nullptr) continue;
    if (!result.ok()) {
      Log(base::LogLevel::kWarning,
          absl::StrCat("the server did not take the adapter grown at block ", proposal.block, " (",
                       result.status().message(), "); it stays on this device"));
      continue;
    }
    if (FindLocked(result->name) != nullptr) {
      // It joined a module this device already runs: one copy syncs, this one stays local.
      Log(base::LogLevel::kInfo,
          absl::StrCat("the adapter grown at block ", proposal.block, " joined '", result->name,
                       "', which this device already runs"));
      continue;
    }
    m->server_name = result->name;
    m->on_server = true;
    *taken = true;
    ++counters_.proposals;
    if (result->merged) {  // the group's module arrives with the next GetWork; re-based then
      Log(base::LogLevel::kInfo,
          absl::StrCat("the adapter grown at block ", proposal.block, " joined '", result->name,
                       "' (divergence ", result->divergence, ")"));
    } else {
      m->version = 0;  // the module the server founded holds the proposed values
      Log(base::LogLevel::kInfo, absl::StrCat("the adapter grown at block ", proposal.block,
                                              " founded the pool's '", result->name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status DeviceSession::AttachDescriptorsLocked(std::unique_lock<std::mutex>& lock) {
  cl::ExpansionHooks* hooks = trainer_.expansion();
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (!modules_[i].descriptor_pending || !modules_[i].on_server) continue;
    const auto [block, index] = hooks->SlotOf(modules_[i].live);
    std::optional<nn::ParameterSet> descriptor = hooks->ExpertDescriptor(block, index);
    if (!descriptor.has_value()) continue;  // the growth still trains it
    const std::string name = modules_[i].server_name;
    lock.unlock();  // no lock across a port call
    absl::StatusOr<bool> attached =
        env_.port->AttachDescriptor(options_.client_id, name, *descriptor);
    lock.lock();
    const bool refused =
        absl::IsNotFound(attached.status()) || absl::IsInvalidArgument(attached.status());
    if (!attached.ok() && !refused) {
      if (IsTransient(attached.status())) return attached.status();
      // A server that stopped after a storage failure, or one without the call: try later.
      Log(base::LogLevel::kDebug,
          absl::StrCat("the descriptor of '", name, "' waits: ", attached.status().message()));
      continue;
    }
    if (attached.ok()) counters_.growth_bytes_uploaded += descriptor->num_values() * 4;
    Module* m = FindLocked(name);  // the modules may have changed while unlocked
    if (m == nullptr) continue;
    m->descriptor_pending = false;
    if (!attached.ok()) {
      Log(base::LogLevel::kWarning, absl::StrCat("the pool did not take the descriptor of '", name,
                                                 "': ", attached.status().message()));
    } else {
      Log(base::LogLevel::kInfo, *attached ? absl::StrCat("sent the descriptor of '", name, "'")
                                           : absl::StrCat("'", name, "' already had a descriptor"));
    }
  }
  return absl::OkStatus();
}

}  // namespace fedcl::device
