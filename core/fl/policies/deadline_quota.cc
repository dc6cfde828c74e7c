// deadline_quota: the synchronous round of a live server (round_policy.h). Round t opens with a
// deadline of now + round_duration; at the deadline it closes once min_participants updates were
// accepted, otherwise the deadline moves on by round_duration; it closes as soon as
// max_participants (> 0) updates were accepted.
#include "absl/strings/str_cat.h"
#include "core/fl/round_policy.h"

namespace fedcl::fl {
namespace {

class DeadlineQuotaPolicy final : public RoundPolicy {
 public:
  explicit DeadlineQuotaPolicy(const RoundPolicyConfig& config) : config_(config) {}
  absl::string_view name() const override { return "deadline_quota"; }
  absl::Time Open(int64_t round, absl::Time opened) override {
    return opened + config_.round_duration;
  }
  bool CloseAfterAccept(const RoundProgress& progress) const override {
    return config_.max_participants > 0 && progress.accepted >= config_.max_participants;
  }
  TickAction OnTick(const RoundProgress& progress, absl::Time now) const override {
    if (now < progress.deadline) return TickAction::kNothing;
    return progress.accepted >= config_.min_participants ? TickAction::kClose : TickAction::kExtend;
  }
  absl::Time Extend(const RoundProgress& progress, absl::Time now) const override {
    return now + config_.round_duration;
  }

 private:
  const RoundPolicyConfig config_;
};

}  // namespace

void RegisterDeadlineQuotaPolicy(RoundPolicyRegistry& registry) {
  registry.Register(
      "deadline_quota",
      [](const RoundPolicyConfig& config) -> absl::StatusOr<std::unique_ptr<RoundPolicy>> {
        if (config.min_participants < 0 || config.max_participants < 0 ||
            (config.max_participants > 0 && config.max_participants < config.min_participants)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "round policy deadline_quota: need 0 <= min_participants (", config.min_participants,
              ") <= max_participants (", config.max_participants, ") or max_participants = 0"));
        }
        if (!config.options.empty()) {
          return absl::InvalidArgumentError("round policy deadline_quota takes no options");
        }
        return std::make_unique<DeadlineQuotaPolicy>(config);
      });
}

}  // namespace fedcl::fl
