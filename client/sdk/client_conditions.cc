// Client::Impl::CheckConditions: the app's device conditions gate learning and syncing
// (ClientOptions::conditions).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/sdk/client_impl.h"

namespace fedcl {

absl::Status Client::Impl::CheckConditions(Activity activity) {
  if (options_.conditions == nullptr) return absl::OkStatus();
  const ClientOptions::Conditions now = options_.conditions();
  const ClientOptions::Conditions& needs =
      activity == Activity::kLearn ? options_.learn_requires : options_.sync_requires;
  std::vector<std::string> missing;
  if (needs.charging && !now.charging) missing.push_back("not charging");
  if (needs.unmetered_network && !now.unmetered_network) missing.push_back("on a metered network");
  if (needs.idle && !now.idle) missing.push_back("in use");
  if (missing.empty()) return absl::OkStatus();
  {
    std::lock_guard<std::mutex> stats(stats_mu_);
    ++run_.ineligible_calls;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("not eligible to ", activity == Activity::kLearn ? "learn" : "sync",
                   ": the device is ", absl::StrJoin(missing, " and ")));
}

}  // namespace fedcl
