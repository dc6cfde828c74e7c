// Adaptive server optimisers of Reddi et al., "Adaptive Federated Optimization" (ICLR 2021),
// Algorithm 2: the round's pseudo-gradient is the mean of the participants' deltas,
//   Δ̄ = (1/|S_t|)·Σ_{S_t} Δ_n,
// and the server keeps first and second moments m, v (one float each per parameter):
//   m ← β1·m + (1 − β1)·Δ̄
//   v ← β2·v + (1 − β2)·Δ̄²                      (variant "adam", FedAdam: the default)
//   v ← v − (1 − β2)·Δ̄²·sign(v − Δ̄²)            (variant "yogi", FedYogi)
//   v ← v + Δ̄²                                  (variant "adagrad", FedAdagrad)
//   x ← x + γ·m / (√v + τ)                        γ: the aggregator's global_learning_rate
// with m and v starting at 0 and no bias correction, as the paper's algorithm states. A round
// in which nobody took part changes nothing (x, m and v stay). Defaults β1 = 0.9, β2 = 0.99,
// τ = 1e-3 (the paper's choices for β and the middle of its τ grid); the server learning rate
// γ, which the paper tunes per task, is the aggregator's own field (reported values are 1e-2 to
// 1 for FedAdam; the default 1 is rarely right).
//
// Options (a text proto): beta1 in [0, 1), beta2 in [0, 1), tau > 0, variant adam|yogi|adagrad.
// Memory: 8·d bytes for the round's sum plus 8·d for m and v, exported as two keyed vectors
// (key 0: m, key 1: v) so that a restarted server continues bit-identically.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/fixed_point_accumulator.h"

namespace fedcl::fl {
namespace {

enum class Variant { kAdam, kYogi, kAdagrad };

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.99;
  double tau = 1e-3;
  Variant variant = Variant::kAdam;
};

absl::StatusOr<AdamOptions> ParseAdamOptions(const std::string& text) {
  AdamOptions o;
  FEDCL_ASSIGN_OR_RETURN(base::OptionText options, base::OptionText::Parse(text, "rule fedadam"));
  std::string variant = "adam";
  FEDCL_RETURN_IF_ERROR(options.Read("beta1", &o.beta1));
  FEDCL_RETURN_IF_ERROR(options.Read("beta2", &o.beta2));
  FEDCL_RETURN_IF_ERROR(options.Read("tau", &o.tau));
  FEDCL_RETURN_IF_ERROR(options.Read("variant", &variant));
  FEDCL_RETURN_IF_ERROR(options.CheckAllRead());
  if (!(o.beta1 >= 0 && o.beta1 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule fedadam: beta1 must be in [0, 1), got ", o.beta1));
  }
  if (!(o.beta2 >= 0 && o.beta2 < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule fedadam: beta2 must be in [0, 1), got ", o.beta2));
  }
  if (!(o.tau > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("rule fedadam: tau must be > 0, got ", o.tau));
  }
  if (variant == "adam") {
    o.variant = Variant::kAdam;
  } else if (variant == "yogi") {
    o.variant = Variant::kYogi;
  } else if (variant == "adagrad") {
    o.variant = Variant::kAdagrad;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("rule fedadam: variant must be adam, yogi or adagrad, got '", variant, "'"));
  }
  return o;
}

class FedAdamState final : public ModuleRuleState {
 public:
  FedAdamState(int64_t size, tbb::task_arena* arena, double gamma, const AdamOptions& options)
      : sum_(size, arena), m_(size, 0.0f), v_(size, 0.0f), gamma_(gamma), options_(options) {}

  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight) override {
    return sum_.Add(delta, 1.0);
  }
  absl::Status CheckFinish(const RoundTotals& totals) const override { return absl::OkStatus(); }
  absl::Status Finish(const RoundTotals& totals, absl::Span<float> params) override {
    if (totals.folded == 0) return absl::OkStatus();
    // Δ̄ from the exact sum, rounded to float once (what a client's delta is made of anyway).
    std::vector<float> mean(params.size(), 0.0f);
    FEDCL_RETURN_IF_ERROR(
        sum_.DrainInto(absl::MakeSpan(mean), 1.0 / static_cast<double>(totals.participants)));
    const double b1 = options_.beta1, b2 = options_.beta2;
    for (size_t i = 0; i < params.size(); ++i) {
      const double g = mean[i];
      const double g2 = g * g;
      const double m = b1 * m_[i] + (1.0 - b1) * g;
      double v = v_[i];
      switch (options_.variant) {
        case Variant::kAdam:
          v = b2 * v + (1.0 - b2) * g2;
          break;
        case Variant::kYogi:
          v = v - (1.0 - b2) * g2 * ((v > g2) - (v < g2));
          break;
        case Variant::kAdagrad:
          v = v + g2;
          break;
      }
      m_[i] = static_cast<float>(m);
      v_[i] = static_cast<float>(v);
      params[i] = static_cast<float>(params[i] +
                                     gamma_ * m_[i] / (std::sqrt(double{v_[i]}) + options_.tau));
    }
    return absl::OkStatus();
  }
  ClientVectors ExportMemory() const override { return {{0, m_}, {1, v_}}; }
  absl::Status ImportMemory(const ClientVectors& memory) override;
  int64_t memory_bytes() const override {
    return sum_.memory_bytes() +
           static_cast<int64_t>((m_.capacity() + v_.capacity()) * sizeof(float));
  }

 private:
  FixedPointAccumulator sum_;  // Σ_{S_t} Δ_n
  std::vector<float> m_, v_;
  const double gamma_;
  const AdamOptions options_;
};

absl::Status FedAdamState::ImportMemory(const ClientVectors& memory) {
  if (memory.size() != 2 || memory[0].first != 0 || memory[1].first != 1) {
    return absl::InvalidArgumentError(
        "fedadam memory must be two vectors, key 0 (first moment) and key 1 (second moment)");
  }
  for (const auto& [key, values] : memory) {
    if (values.size() != m_.size()) {
      return absl::InvalidArgumentError(absl::StrCat("fedadam memory vector ", key, " has ",
                                                     values.size(), " values, the module ",
                                                     m_.size()));
    }
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i]) || (key == 1 && values[i] < 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "fedadam memory vector ", key, ": element ", i, " is ", values[i],
            key == 1 ? " (a second moment must be finite and >= 0)" : " (not finite)"));
      }
    }
  }
  m_ = memory[0].second;
  v_ = memory[1].second;
  return absl::OkStatus();
}

class FedAdamRule final : public AggregationRule {
 public:
  FedAdamRule(double gamma, const AdamOptions& options) : gamma_(gamma), options_(options) {}
  absl::string_view name() const override { return "fedadam"; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<FedAdamState>(size, arena, gamma_, options_);
  }

 private:
  const double gamma_;
  const AdamOptions options_;
};

}  // namespace

void RegisterFedAdamRule(RuleRegistry& registry) {
  registry.Register(
      "fedadam", "Reddi et al.'s server Adam (or Yogi, Adagrad) on the participants' mean delta",
      [](const RuleConfig& config) -> absl::StatusOr<std::unique_ptr<AggregationRule>> {
        FEDCL_ASSIGN_OR_RETURN(AdamOptions options, ParseAdamOptions(config.options));
        return std::make_unique<FedAdamRule>(config.global_learning_rate, options);
      });
}

}  // namespace fedcl::fl
