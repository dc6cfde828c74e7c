// fedcl::Client's durable state: restoring it when a backbone loads and saving it (the message
// and its codec are in proto/device_state.h, the file and its previous good copy in
// proto/device_state_store.h).
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/sdk/client_impl.h"
#include "core/base/status_macros.h"
#include "proto/device_state.h"
#include "proto/tensor_convert.h"

namespace fedcl {

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
  auto problem = [&](absl::string_view what) {
    Log(LogLevel::kError, absl::StrCat("the stored device state does not fit the model (", what,
                                       "): starting from the backbone's modules"));
  };
  nn::ParameterSet adapted;
  if (state.has_adapted_backbone()) {
    adapted = learner_->model().backbone().parameters();
    if (absl::Status s = proto::CopyValuesFromProto(state.adapted_backbone(), &adapted); !s.ok())
      return problem(s.message());
  }
  if (absl::Status s = proto::RestoreDeviceState(state, *learner_, *session_); !s.ok())
    return problem(s.message());
  app_tasks_ = state.app_tasks();
  learner_->set_task_at_shift(!app_tasks_);
  if (state.has_adapted_backbone()) {
    learner_->model().backbone().parameters().flat_values() = adapted.flat_values();
    adapted_ = true;
    ++adapt_generation_;
  }
  Log(LogLevel::kInfo, absl::StrCat("restored ", state.modules_size(), " modules and ",
                                    session_->QueuedRecordsLocked(), " queued deltas"));
}

absl::Status Client::Impl::SaveLocked(bool commit) {
  if (learner_ == nullptr) {
    // Nothing loaded yet: keep what was read until a backbone applies it.
    return stored_.has_value() ? store_.Save(*stored_) : absl::OkStatus();
  }
  if (commit) FEDCL_RETURN_IF_ERROR(session_->CommitLocked());
  v1::DeviceState state = proto::EncodeDeviceState(options_.client_id, options_.method,
                                                   backbone_digest_, *session_, *learner_);
  state.set_learn_batches(life_.learn_batches());
  state.set_learned_samples(life_.learned_samples());
  state.set_adapt_batches(life_.adapt_batches());
  state.set_app_tasks(app_tasks_);
  if (adapted_) {
    proto::ToProto(learner_->model().backbone().parameters(), state.mutable_adapted_backbone());
  }
  return store_.Save(state);
}

absl::Status Client::Impl::Save() {
  std::lock_guard<std::mutex> lock(model_mu_);
  return SaveLocked();
}

}  // namespace fedcl
