#include "core/cl/method.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/cl/learner_core.h"

namespace fedcl::cl {

absl::StatusOr<nn::Matrix> Method::ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                               Inspection* hooks, int64_t start) {
  nn::Matrix logits = core.model().Forward(images, false);
  core.CopyHooks(hooks, start, images.rows());
  return logits;
}

absl::Status Method::RestoreState(LearnerCore& core, const MethodState& state) {
  if (state.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("method ", name(), " keeps no private state, got some"));
}

absl::Status Method::SetOption(absl::string_view key, absl::string_view value) {
  return absl::InvalidArgumentError(
      absl::StrCat("method ", name(), " has no run-time option '", key, "'"));
}

void MethodRegistry::Register(absl::string_view name, absl::string_view summary,
                              MethodFactory factory) {
  const bool inserted =
      methods_.try_emplace(std::string(name), std::string(summary), std::move(factory)).second;
  FEDCL_CHECK(inserted) << "continual method '" << name << "' registered twice";
}

const MethodFactory* MethodRegistry::Find(absl::string_view name) const {
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second.second;
}

std::vector<std::string> MethodRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : methods_) names.push_back(name);
  return names;
}

std::string MethodRegistry::Summary(absl::string_view name) const {
  auto it = methods_.find(name);
  return it == methods_.end() ? std::string() : it->second.first;
}

const MethodRegistry& Methods() {
  static const MethodRegistry* const registry = [] {
    auto* r = new MethodRegistry;
    RegisterBuiltinMethods(*r);
    return r;
  }();
  return *registry;
}

absl::StatusOr<std::unique_ptr<Method>> CreateMethod(const MethodConfig& config) {
  const MethodFactory* factory = Methods().Find(config.name);
  if (factory == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown continual-learning method '", config.name,
                     "'; registered: ", absl::StrJoin(Methods().Names(), ", ")));
  }
  return (*factory)(config);
}

}  // namespace fedcl::cl
