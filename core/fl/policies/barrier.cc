// barrier: a round closes when each of K reporters has reported it (round_policy.h). The
// simulator's worker shards report over gRPC (fedcl-server's ReportShard); an in-process
// simulator is one reporter. Ticks never close a barrier round: its deadline only paces waiting
// clients.
#include <set>

#include "absl/strings/str_cat.h"
#include "core/fl/round_policy.h"

namespace fedcl::fl {
namespace {

class BarrierPolicy final : public RoundPolicy {
 public:
  explicit BarrierPolicy(const RoundPolicyConfig& config) : config_(config) {}
  absl::string_view name() const override { return "barrier"; }
  absl::Time Open(int64_t round, absl::Time opened) override {
    reported_.clear();
    return opened + config_.round_duration;
  }
  absl::StatusOr<bool> Report(const RoundProgress& progress, int reporter, int reporters,
                              int64_t round) override {
    if (reporters != config_.reporters || reporter < 0 || reporter >= reporters) {
      return absl::InvalidArgumentError(absl::StrCat("reporter ", reporter, " of ", reporters,
                                                     ": the round waits for ", config_.reporters,
                                                     " reporter(s)"));
    }
    if (round > progress.round) {
      return absl::OutOfRangeError(
          absl::StrCat("round ", round, " is not open (round ", progress.round, " is)"));
    }
    if (round < progress.round) return false;  // a late report of a closed round
    reported_.insert(reporter);
    return static_cast<int>(reported_.size()) == config_.reporters;
  }
  int reported() const override { return static_cast<int>(reported_.size()); }

 private:
  const RoundPolicyConfig config_;
  std::set<int> reported_;  // reporters of the open round
};

}  // namespace

void RegisterBarrierPolicy(RoundPolicyRegistry& registry) {
  registry.Register(
      "barrier",
      [](const RoundPolicyConfig& config) -> absl::StatusOr<std::unique_ptr<RoundPolicy>> {
        if (config.reporters < 1 || config.reporters > 100000) {
          return absl::InvalidArgumentError(absl::StrCat(
              "round policy barrier: reporters must be in [1, 100000], got ", config.reporters));
        }
        if (config.max_participants > 0) {
          return absl::InvalidArgumentError(
              "round policy barrier closes rounds when every reporter reported; it cannot be "
              "combined with max_participants");
        }
        if (!config.options.empty()) {
          return absl::InvalidArgumentError("round policy barrier takes no options");
        }
        return std::make_unique<BarrierPolicy>(config);
      });
}

}  // namespace fedcl::fl
