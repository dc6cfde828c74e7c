#include "core/fl/round_policy.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {

absl::Status RoundPolicy::Admit(int64_t update_round, int64_t current_round) const {
  if (update_round < current_round) {
    return absl::AbortedError(
        absl::StrCat("round ", update_round, " has closed; the current round is ", current_round));
  }
  if (update_round > current_round) {
    return absl::OutOfRangeError(absl::StrCat(
        "round ", update_round, " has not opened; the current round is ", current_round));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> RoundPolicy::Report(const RoundProgress& progress, int reporter, int reporters,
                                         int64_t round) {
  return absl::FailedPreconditionError(
      absl::StrCat("the ", name(),
                   " round policy closes rounds itself; it takes no reports (use the barrier "
                   "policy for reporters)"));
}

void RoundPolicyRegistry::Register(absl::string_view name, RoundPolicyFactory factory) {
  const bool inserted = policies_.try_emplace(std::string(name), std::move(factory)).second;
  FEDCL_CHECK(inserted) << "round policy '" << name << "' registered twice";
}

const RoundPolicyFactory* RoundPolicyRegistry::Find(absl::string_view name) const {
  auto it = policies_.find(name);
  return it == policies_.end() ? nullptr : &it->second;
}

std::vector<std::string> RoundPolicyRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, factory] : policies_) names.push_back(name);
  return names;
}

const RoundPolicyRegistry& RoundPolicies() {
  static const RoundPolicyRegistry* const registry = [] {
    auto* r = new RoundPolicyRegistry;
    RegisterBuiltinPolicies(*r);
    return r;
  }();
  return *registry;
}

absl::StatusOr<std::unique_ptr<RoundPolicy>> CreateRoundPolicy(const RoundPolicyConfig& config) {
  const RoundPolicyFactory* factory = RoundPolicies().Find(config.name);
  if (factory == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown round policy '", config.name,
                     "'; registered: ", absl::StrJoin(RoundPolicies().Names(), ", ")));
  }
  if (config.round_duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("round policy: round_duration must be positive");
  }
  return (*factory)(config);
}

}  // namespace fedcl::fl
