#include "core/fl/aggregator.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {

std::unique_ptr<ModuleAggregator> ModuleAggregator::Create(
    std::shared_ptr<const AggregationRule> rule, int64_t size, tbb::task_arena* arena) {
  FEDCL_CHECK(rule != nullptr) << "a module aggregator needs a rule";
  FEDCL_CHECK(size >= 0) << "module size " << size;
  return std::unique_ptr<ModuleAggregator>(new ModuleAggregator(std::move(rule), size, arena));
}

std::unique_ptr<ModuleAggregator> ModuleAggregator::Create(const RuleConfig& config, int64_t size,
                                                           tbb::task_arena* arena) {
  absl::StatusOr<std::shared_ptr<const AggregationRule>> rule = CreateAggregationRule(config);
  FEDCL_CHECK_OK(rule.status());
  return Create(*std::move(rule), size, arena);
}

ModuleAggregator::ModuleAggregator(std::shared_ptr<const AggregationRule> rule, int64_t size,
                                   tbb::task_arena* arena)
    : rule_(std::move(rule)), size_(size), state_(rule_->NewModuleState(size, arena)) {}

void ModuleAggregator::BeginRound(int64_t round) {
  absl::MutexLock lock(&mu_);
  FEDCL_CHECK(!round_open_ || folded_.empty())
      << "BeginRound(" << round << ") while round " << round_ << " has folds";
  FEDCL_CHECK(round > round_) << "BeginRound(" << round << ") after round " << round_;
  round_ = round;
  round_open_ = true;
}

absl::Status ModuleAggregator::Fold(ClientId client, absl::Span<const float> delta, double weight) {
  FEDCL_RETURN_IF_ERROR(rule_->CheckWeight(weight));
  if (static_cast<int64_t>(delta.size()) != size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta has ", delta.size(), " values, the module ", size_));
  }
  absl::MutexLock lock(&mu_);
  if (!round_open_) return absl::FailedPreconditionError("fold with no round open");
  if (folded_.contains(client)) {
    return absl::AlreadyExistsError(
        absl::StrCat("client ", client, " already folded in round ", round_));
  }
  FEDCL_RETURN_IF_ERROR(state_->Fold(client, delta, weight));
  folded_.insert(client);
  return absl::OkStatus();
}

absl::Status ModuleAggregator::FinishRound(int64_t participants, int64_t enrolled,
                                           absl::Span<float> params) {
  absl::MutexLock lock(&mu_);
  if (!round_open_) return absl::FailedPreconditionError("FinishRound with no round open");
  if (static_cast<int64_t>(params.size()) != size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("params have ", params.size(), " values, the module ", size_));
  }
  const RoundTotals totals{.round = round_,
                           .participants = participants,
                           .enrolled = enrolled,
                           .folded = static_cast<int64_t>(folded_.size())};
  if (participants < totals.folded) {
    return absl::InvalidArgumentError(absl::StrCat("round ", round_, ": ", participants,
                                                   " participants but ", totals.folded,
                                                   " clients folded"));
  }
  FEDCL_RETURN_IF_ERROR(state_->CheckFinish(totals));
  FEDCL_RETURN_IF_ERROR(state_->Finish(totals, params));
  folded_.clear();
  round_open_ = false;
  return absl::OkStatus();
}

ClientVectors ModuleAggregator::ExportMemory() const {
  absl::MutexLock lock(&mu_);
  return state_->ExportMemory();
}

absl::Status ModuleAggregator::ImportMemory(const ClientVectors& memory) {
  absl::MutexLock lock(&mu_);
  if (!folded_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ImportMemory during round ", round_, ", which has folds"));
  }
  return state_->ImportMemory(memory);
}

absl::Status ModuleAggregator::ForgetClient(ClientId client) {
  absl::MutexLock lock(&mu_);
  if (rule_->keeps_client_memory() && folded_.contains(client)) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", client, " folded in the open round ", round_));
  }
  return state_->ForgetClient(client);
}

std::optional<int64_t> ModuleAggregator::ClientBaseVersion(ClientId client) const {
  absl::MutexLock lock(&mu_);
  return state_->ClientBaseVersion(client);
}

std::shared_ptr<const std::vector<float>> ModuleAggregator::BaseValues(int64_t version) const {
  absl::MutexLock lock(&mu_);
  return state_->BaseValues(version);
}

std::vector<float> ModuleAggregator::MeanClientBase(int64_t clients,
                                                    absl::Span<const float> current) const {
  absl::MutexLock lock(&mu_);
  return state_->MeanClientBase(clients, current);
}

int64_t ModuleAggregator::memory_bytes() const {
  absl::MutexLock lock(&mu_);
  return state_->memory_bytes() + static_cast<int64_t>(folded_.capacity() * (sizeof(ClientId) + 1));
}

}  // namespace fedcl::fl
