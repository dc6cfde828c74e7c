// MIFA (algorithms.md §1.7): y_n ← Δ_n for n ∈ S_t; x += γ·(1/N)·Σ_{all j} y_j, applied every
// round, also when S_t is empty (the stored deltas of absent clients stand in for theirs).
#include "core/base/status_macros.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/rules/client_memory.h"

namespace fedcl::fl {
namespace {

class MifaState final : public ModuleRuleState {
 public:
  MifaState(int64_t size, tbb::task_arena* arena, double gamma)
      : memory_(size, arena), gamma_(gamma) {}

  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight) override {
    FEDCL_RETURN_IF_ERROR(memory_.sum().AddDifference(delta, memory_.Find(client), 1.0));
    memory_.Store(client, delta);
    return absl::OkStatus();
  }
  absl::Status CheckFinish(const RoundTotals& totals) const override {
    if (!memory_.empty() && totals.enrolled < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", totals.round, ": mifa divides by N = ", totals.enrolled));
    }
    return absl::OkStatus();
  }
  absl::Status Finish(const RoundTotals& totals, absl::Span<float> params) override {
    if (memory_.empty()) return absl::OkStatus();
    FEDCL_RETURN_IF_ERROR(
        memory_.sum().ReadInto(params, gamma_ / static_cast<double>(totals.enrolled)));
    memory_.sum().Tighten();
    return absl::OkStatus();
  }
  ClientVectors ExportMemory() const override { return memory_.Export(); }
  absl::Status ImportMemory(const ClientVectors& memory) override { return memory_.Import(memory); }
  absl::Status ForgetClient(ClientId client) override { return memory_.Forget(client); }
  int64_t memory_bytes() const override { return memory_.memory_bytes(); }

 private:
  ClientMemory memory_;  // y_n and Σ_{all j} y_j, current
  const double gamma_;
};

class MifaRule final : public AggregationRule {
 public:
  explicit MifaRule(const RuleConfig& config) : gamma_(config.global_learning_rate) {}
  absl::string_view name() const override { return "mifa"; }
  bool keeps_client_memory() const override { return true; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<MifaState>(size, arena, gamma_);
  }

 private:
  const double gamma_;
};

}  // namespace

void RegisterMifaRule(RuleRegistry& registry) {
  RegisterRuleWithoutOptions<MifaRule>(
      registry, "mifa",
      "the mean of every client's last delta, applied each round (O(N·d) memory)");
}

}  // namespace fedcl::fl
