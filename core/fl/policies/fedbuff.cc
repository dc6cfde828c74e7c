// fedbuff: buffered asynchronous aggregation (round_policy.h; algorithms-next.md §1, FLSim's
// FedBuffAggregator with fedcl's sign, Δ = after − before, added).
//
// A round is a model version v. A device trains on the version it downloaded, v_base, and its
// update names it; it arrives with staleness τ = v − v_base. Updates with τ > max_staleness are
// refused (Aborted, naming both); the others are scaled by s(τ) and folded with the rule's
// client weight, and every buffer_size accepted updates the buffer closes: the rule's aggregate
// steps the model by its server learning rate, and v + 1 opens. So the divisor D of §1.6 is the
// rule's own: N for FedAU and average_all (§1.7), the number of updates in the buffer (= K, the
// paper-style mean) for average_participating.
//
// Staleness weights, all with s(0) = 1 (unnormalised: FLSim's normalisation to s(1) = 1 would
// scale fresh updates by sqrt(2), which only moves the learning rate):
//   staleness: polynomial  s(τ) = (1 + τ)^(−exponent)          exponent in [0, 1], default 0.5:
//                                                              FedBuff's 1/sqrt(1 + τ), the default
//   staleness: constant    s(τ) = 1                            (the choice §1.7 suggests with
//   FedAU) staleness: hinge       s(τ) = 1 if τ <= hinge_b, else 1 / (hinge_a·(τ − hinge_b) + 1)
//                                                              (FedAsync's; a = 10, b = 4 default)
// Options: buffer_size (K >= 1, default 10), max_staleness (>= 0, default 10: NVFlare's model
// history), staleness, exponent, hinge_a (> 0), hinge_b (>= 0).
//
// A buffer also closes at its deadline (round_duration after it opened) once it holds at least
// one update, and the deadline moves on otherwise: a flush on time as well as on count, which
// FLSim leaves to the end of an epoch and a deployment cannot (§1.9).
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/fl/round_policy.h"

namespace fedcl::fl {
namespace {

enum class StalenessFunction { kPolynomial, kConstant, kHinge };

struct FedBuffOptions {
  int64_t buffer_size = 10;
  int64_t max_staleness = 10;
  StalenessFunction function = StalenessFunction::kPolynomial;
  double exponent = 0.5;
  double hinge_a = 10.0;
  double hinge_b = 4.0;
};

// Each out-of-range or inapplicable knob is an error naming it.
absl::StatusOr<FedBuffOptions> ParseOptions(absl::string_view text) {
  FedBuffOptions options;
  FEDCL_ASSIGN_OR_RETURN(base::OptionText knobs,
                         base::OptionText::Parse(text, "round policy fedbuff"));
  FEDCL_RETURN_IF_ERROR(knobs.Read("buffer_size", &options.buffer_size));
  FEDCL_RETURN_IF_ERROR(knobs.Read("max_staleness", &options.max_staleness));
  std::string function = "polynomial";
  FEDCL_RETURN_IF_ERROR(knobs.Read("staleness", &function));
  FEDCL_RETURN_IF_ERROR(knobs.Read("exponent", &options.exponent));
  FEDCL_RETURN_IF_ERROR(knobs.Read("hinge_a", &options.hinge_a));
  FEDCL_RETURN_IF_ERROR(knobs.Read("hinge_b", &options.hinge_b));
  FEDCL_RETURN_IF_ERROR(knobs.CheckAllRead());
  if (options.buffer_size < 1 || options.buffer_size > 1000000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round policy fedbuff: buffer_size must be in [1, 1000000], got ", options.buffer_size));
  }
  if (options.max_staleness < 0 || options.max_staleness > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("round policy fedbuff: max_staleness must be in [0, 1000000], got ",
                     options.max_staleness));
  }
  if (function == "polynomial") {
    options.function = StalenessFunction::kPolynomial;
  } else if (function == "constant") {
    options.function = StalenessFunction::kConstant;
  } else if (function == "hinge") {
    options.function = StalenessFunction::kHinge;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("round policy fedbuff: staleness must be polynomial, constant or hinge, got '",
                     function, "'"));
  }
  if (knobs.Has("exponent") && options.function != StalenessFunction::kPolynomial) {
    return absl::InvalidArgumentError(
        "round policy fedbuff: exponent applies to staleness: polynomial only");
  }
  if ((knobs.Has("hinge_a") || knobs.Has("hinge_b")) &&
      options.function != StalenessFunction::kHinge) {
    return absl::InvalidArgumentError(
        "round policy fedbuff: hinge_a and hinge_b apply to staleness: hinge only");
  }
  if (!(options.exponent >= 0.0 && options.exponent <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("round policy fedbuff: exponent must be in [0, 1], got ", options.exponent));
  }
  if (!(options.hinge_a > 0.0 && options.hinge_a <= 1e6)) {
    return absl::InvalidArgumentError(
        absl::StrCat("round policy fedbuff: hinge_a must be in (0, 1e6], got ", options.hinge_a));
  }
  if (!(options.hinge_b >= 0.0 && options.hinge_b <= 1e6)) {
    return absl::InvalidArgumentError(
        absl::StrCat("round policy fedbuff: hinge_b must be in [0, 1e6], got ", options.hinge_b));
  }
  return options;
}

class FedBuffPolicy final : public RoundPolicy {
 public:
  FedBuffPolicy(const RoundPolicyConfig& config, const FedBuffOptions& options)
      : round_duration_(config.round_duration), options_(options) {}
  absl::string_view name() const override { return "fedbuff"; }
  absl::Time Open(int64_t round, absl::Time opened) override { return opened + round_duration_; }

  absl::Status Admit(int64_t update_round, int64_t current_round) const override {
    if (update_round > current_round) {
      return absl::OutOfRangeError(absl::StrCat(
          "version ", update_round, " does not exist yet; the current version is ", current_round));
    }
    const int64_t staleness = current_round - update_round;
    if (staleness > options_.max_staleness) {
      return absl::AbortedError(
          absl::StrCat("the update was trained from version ", update_round, ", ", staleness,
                       " versions behind the current ", current_round, ", beyond max_staleness ",
                       options_.max_staleness, ": download the current modules and submit again"));
    }
    return absl::OkStatus();
  }
  bool CloseAfterAccept(const RoundProgress& progress) const override {
    return progress.accepted >= options_.buffer_size;
  }
  TickAction OnTick(const RoundProgress& progress, absl::Time now) const override {
    if (now < progress.deadline) return TickAction::kNothing;
    return progress.accepted > 0 ? TickAction::kClose : TickAction::kExtend;
  }
  absl::Time Extend(const RoundProgress& progress, absl::Time now) const override {
    return now + round_duration_;
  }
  int64_t max_staleness() const override { return options_.max_staleness; }
  int64_t buffer_size() const override { return options_.buffer_size; }
  double StalenessWeight(int64_t staleness) const override {
    const double tau = static_cast<double>(staleness);
    switch (options_.function) {
      case StalenessFunction::kConstant:
        return 1.0;
      case StalenessFunction::kPolynomial:
        return std::pow(1.0 + tau, -options_.exponent);
      case StalenessFunction::kHinge:
        return tau <= options_.hinge_b ? 1.0
                                       : 1.0 / (options_.hinge_a * (tau - options_.hinge_b) + 1.0);
    }
    return 1.0;
  }

 private:
  const absl::Duration round_duration_;
  const FedBuffOptions options_;
};

}  // namespace

void RegisterFedBuffPolicy(RoundPolicyRegistry& registry) {
  registry.Register(
      "fedbuff",
      [](const RoundPolicyConfig& config) -> absl::StatusOr<std::unique_ptr<RoundPolicy>> {
        if (config.max_participants != 0) {
          return absl::InvalidArgumentError(
              "round policy fedbuff: max_participants does not apply; the buffer closes every "
              "buffer_size updates (options)");
        }
        FEDCL_ASSIGN_OR_RETURN(FedBuffOptions options, ParseOptions(config.options));
        return std::make_unique<FedBuffPolicy>(config, options);
      });
}

}  // namespace fedcl::fl
