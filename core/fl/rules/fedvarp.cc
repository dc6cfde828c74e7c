// FedVARP (algorithms.md §1.7): with y_n each client's last delta (0 before its first),
//   v = (1/|S_t|)·Σ_{S_t}(Δ_n − y_n) + (1/N)·Σ_{all j} y_j (as of the round's start),
//   y_n ← Δ_n for n ∈ S_t,  x += γ·v.
// Reference-code quirk kept: v = 0 when S_t is empty (the stored mean is not applied).
#include "core/base/status_macros.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/client_memory.h"

namespace fedcl::fl {
namespace {

class FedVarpState final : public ModuleRuleState {
 public:
  FedVarpState(int64_t size, tbb::task_arena* arena, double gamma)
      : round_sum_(size, arena), memory_(size, arena), gamma_(gamma) {}

  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight) override {
    // Σ_S (Δ_n − y_n) now; Σ y_j moves at the close.
    FEDCL_RETURN_IF_ERROR(round_sum_.AddDifference(delta, memory_.Find(client), 1.0));
    memory_.Store(client, delta);
    return absl::OkStatus();
  }
  absl::Status CheckFinish(const RoundTotals& totals) const override {
    if (totals.participants > 0 && !memory_.empty() && totals.enrolled < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", totals.round, ": fedvarp divides by N = ", totals.enrolled));
    }
    return absl::OkStatus();
  }
  absl::Status Finish(const RoundTotals& totals, absl::Span<float> params) override {
    if (totals.participants == 0) return absl::OkStatus();  // the reference code's v = 0
    FEDCL_RETURN_IF_ERROR(memory_.sum().CheckCanAddAccumulator(round_sum_));
    const double scale_n = memory_.empty() ? 0.0 : gamma_ / static_cast<double>(totals.enrolled);
    FEDCL_RETURN_IF_ERROR(FixedPointAccumulator::ReadCombinationInto(
        params, round_sum_, gamma_ / static_cast<double>(totals.participants), memory_.sum(),
        scale_n));
    FEDCL_CHECK_OK(memory_.sum().AddAccumulator(round_sum_));  // checked above
    memory_.sum().Tighten();
    if (totals.folded > 0) round_sum_.Clear();
    return absl::OkStatus();
  }
  ClientVectors ExportMemory() const override { return memory_.Export(); }
  absl::Status ImportMemory(const ClientVectors& memory) override { return memory_.Import(memory); }
  absl::Status ForgetClient(ClientId client) override { return memory_.Forget(client); }
  int64_t memory_bytes() const override {
    return round_sum_.memory_bytes() + memory_.memory_bytes();
  }

 private:
  FixedPointAccumulator round_sum_;  // Σ_{S_t} (Δ_n − y_n)
  ClientMemory memory_;              // y_n and Σ_{all j} y_j as of the round's start
  const double gamma_;
};

class FedVarpRule final : public AggregationRule {
 public:
  explicit FedVarpRule(const RuleConfig& config) : gamma_(config.global_learning_rate) {}
  absl::string_view name() const override { return "fedvarp"; }
  bool keeps_client_memory() const override { return true; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<FedVarpState>(size, arena, gamma_);
  }

 private:
  const double gamma_;
};

}  // namespace

void RegisterFedVarpRule(RuleRegistry& registry) {
  RegisterRuleWithoutOptions<FedVarpRule>(
      registry, "fedvarp", "variance reduction with each client's last delta (O(N·d) memory)");
}

}  // namespace fedcl::fl
