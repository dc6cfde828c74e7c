// When a round closes and which updates count: the Coordinator's round policy, one interface with
// a name registry.
//
//   fl::CoordinatorOptions options;
//   options.round = {.name = "deadline_quota", .round_duration = absl::Seconds(30),
//                    .min_participants = 1, .max_participants = 100};
//   // or, for K simulator shards that each report when their clients are done:
//   options.round = {.name = "barrier", .reporters = K};
//
// The Coordinator owns its policy and asks it at four moments: when a round opens (its deadline,
// and a reset of any per-round state), after each accepted update (close now?), at each Tick
// (close, extend the deadline, or nothing) and when a reporter reports (close now?). It also asks
// which updates count (Admit): synchronous policies take updates for the open round only.
//
// Built-in policies (core/fl/policies/):
//   deadline_quota  round t opens with deadline now + round_duration; at the deadline it closes
//                   once min_participants updates were accepted, else the deadline moves on by
//                   round_duration; it closes at once when max_participants (> 0) were accepted.
//                   fedcl-server's default.
//   barrier         the round closes when each of `reporters` reporters has reported it (the
//                   simulator's shards over gRPC, or an in-process simulator as one reporter).
//                   Ticks never close it; its deadline (now + round_duration) only paces the
//                   clients that wait. Reports are per round and not persisted: a reporter of a
//                   restarted coordinator reports again.
//   fedbuff         buffered asynchronous aggregation (FedBuff, algorithms-next.md §1): a round is
//                   a model version; devices train on the version they downloaded and an update
//                   names it, so it may arrive `staleness` = current − base versions late. Admit
//                   takes staleness up to max_staleness (Aborted beyond, naming it: the device
//                   re-bases and submits again); each accepted update is scaled by
//                   StalenessWeight(staleness) and folded by the rule; the buffer closes (the model
//                   steps by the rule's server learning rate) every buffer_size accepted updates,
//                   and at its deadline (round_duration after it opened) once it holds any, so a
//                   stalled population cannot stall the model. Options, in policies/fedbuff.cc.
//
// A new policy is one file under core/fl/policies/ (the class and a `Register<Name>Policy`
// function) plus one line in core/fl/policies/builtin_policies.cc; knobs beyond the common ones
// come as RoundPolicyConfig::options (a scalar text proto, base::OptionText).
//
// Policies are called under the Coordinator's lock, one call at a time: they need no locking.
#ifndef FEDCL_CORE_FL_ROUND_POLICY_H_
#define FEDCL_CORE_FL_ROUND_POLICY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fedcl::fl {

struct RoundPolicyConfig {
  // A registered policy: "deadline_quota" (default), "barrier" or "fedbuff".
  std::string name = "deadline_quota";
  // deadline_quota: time from a round's opening to its deadline. barrier: the pace suggested to
  // waiting clients. > 0.
  absl::Duration round_duration = absl::Seconds(30);
  // deadline_quota: a round closes at its deadline only once this many updates were accepted
  // (>= 0), and as soon as max_participants were (0 = no quota; else >= min_participants).
  int min_participants = 1;
  int max_participants = 0;
  // barrier: the number of reporters whose reports close a round, in [1, 100000].
  int reporters = 1;
  // Knobs of policies beyond these (base::OptionText): fedbuff's (policies/fedbuff.cc); the
  // synchronous ones take none.
  std::string options;
};

// The round in progress, as a policy sees it.
struct RoundProgress {
  int64_t round = 0;
  absl::Time opened;
  absl::Time deadline;
  int64_t accepted = 0;  // updates accepted in this round so far
};

class RoundPolicy {
 public:
  virtual ~RoundPolicy() = default;
  virtual absl::string_view name() const = 0;

  // A round opens at `opened`: its deadline. Resets any per-round state.
  virtual absl::Time Open(int64_t round, absl::Time opened) = 0;

  // Whether an update for `update_round` counts while `current_round` is open. The synchronous
  // default: Aborted for a round that has closed (the device asks for work again), OutOfRange
  // for one that has not opened.
  virtual absl::Status Admit(int64_t update_round, int64_t current_round) const;

  // After an update was accepted (progress.accepted counts it): true to close the round now.
  virtual bool CloseAfterAccept(const RoundProgress& progress) const { return false; }

  // What a Tick at `now` does.
  enum class TickAction {
    kNothing,
    kClose,
    kExtend,  // the deadline moves to Extend(...)
  };
  virtual TickAction OnTick(const RoundProgress& progress, absl::Time now) const {
    return TickAction::kNothing;
  }
  // The new deadline of a round extended at `now` (OnTick said kExtend).
  virtual absl::Time Extend(const RoundProgress& progress, absl::Time now) const {
    return progress.deadline;
  }

  // Reporter `reporter` of `reporters` says it has nothing more for `round`. True when the
  // round is now to close. Errors change nothing: FailedPrecondition for a policy that takes no
  // reports; InvalidArgument for a reporter outside [0, reporters) or a reporter count that is
  // not the policy's; OutOfRange for a round that has not opened. A report for a round that
  // has closed is accepted and changes nothing (false).
  virtual absl::StatusOr<bool> Report(const RoundProgress& progress, int reporter, int reporters,
                                      int64_t round);
  // Reporters that have reported the open round (0 for policies without reports).
  virtual int reported() const { return 0; }

  // Asynchronous policies: how many rounds late an admitted update may be (0: synchronous, an
  // update counts only in the round it was trained for), and the factor its fold weight is
  // multiplied by at a given staleness (1 at staleness 0).
  virtual int64_t max_staleness() const { return 0; }
  virtual double StalenessWeight(int64_t staleness) const { return 1.0; }
  // Asynchronous policies: the accepted updates that close a buffer (0 for synchronous ones).
  virtual int64_t buffer_size() const { return 0; }
};

// Builds a policy. InvalidArgument naming the field for an unknown name (listing the registered
// ones), an out-of-range field, or options the policy refuses.
absl::StatusOr<std::unique_ptr<RoundPolicy>> CreateRoundPolicy(const RoundPolicyConfig& config);

// The registry: built-in policies register from RegisterBuiltinPolicies
// (policies/builtin_policies.cc).
using RoundPolicyFactory =
    std::function<absl::StatusOr<std::unique_ptr<RoundPolicy>>(const RoundPolicyConfig& config)>;
class RoundPolicyRegistry {
 public:
  void Register(absl::string_view name, RoundPolicyFactory factory);  // twice is a bug (checked)
  const RoundPolicyFactory* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;  // sorted

 private:
  std::map<std::string, RoundPolicyFactory, std::less<>> policies_;
};
const RoundPolicyRegistry& RoundPolicies();
void RegisterBuiltinPolicies(RoundPolicyRegistry& registry);

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_ROUND_POLICY_H_
