#include "core/fl/aggregator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {
namespace {

constexpr std::pair<AggregatorKind, absl::string_view> kKindNames[] = {
    {AggregatorKind::kAdaptive, "adaptive"},
    {AggregatorKind::kKnownProb, "known_prob"},
    {AggregatorKind::kAverageParticipating, "average_participating"},
    {AggregatorKind::kAverageAll, "average_all"},
    {AggregatorKind::kFedVarp, "fedvarp"},
    {AggregatorKind::kMifa, "mifa"},
};

bool IsKnownKind(AggregatorKind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) return true;
  }
  return false;
}

absl::Status CheckFinite(absl::Span<const float> v, absl::string_view what) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": element ", i, " is not finite (", v[i], ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view AggregatorKindName(AggregatorKind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

absl::StatusOr<AggregatorKind> ParseAggregatorKind(absl::string_view name) {
  for (const auto& [kind, n] : kKindNames) {
    if (n == name) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown aggregator '", name,
                   "'; expected adaptive, known_prob, average_participating, average_all, "
                   "fedvarp or mifa"));
}

bool AggregatorUsesClientWeight(AggregatorKind kind) {
  return kind == AggregatorKind::kAdaptive || kind == AggregatorKind::kKnownProb;
}

absl::Status AggregatorOptions::Validate() const {
  if (!IsKnownKind(kind)) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregator: unknown kind ", static_cast<int>(kind)));
  }
  if (!std::isfinite(global_learning_rate) || !(global_learning_rate > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aggregator: global_learning_rate must be finite and > 0, got ", global_learning_rate));
  }
  if (fedau_cutoff < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("aggregator: fedau_cutoff must be >= 0 (0 = none), got ", fedau_cutoff));
  }
  return absl::OkStatus();
}

std::unique_ptr<ModuleAggregator> ModuleAggregator::Create(const AggregatorOptions& options,
                                                           int64_t size, tbb::task_arena* arena) {
  FEDCL_CHECK_OK(options.Validate());
  FEDCL_CHECK(size >= 0) << "module size " << size;
  return std::unique_ptr<ModuleAggregator>(new ModuleAggregator(options, size, arena));
}

ModuleAggregator::ModuleAggregator(const AggregatorOptions& options, int64_t size,
                                   tbb::task_arena* arena)
    : options_(options),
      size_(size),
      arena_(arena),
      round_sum_(options.kind == AggregatorKind::kMifa ? 0 : size, arena),
      memory_sum_(keeps_client_vectors() ? size : 0, arena) {}

void ModuleAggregator::BeginRound(int64_t round) {
  absl::MutexLock lock(&mu_);
  FEDCL_CHECK(!round_open_ || folded_.empty())
      << "BeginRound(" << round << ") while round " << round_ << " has folds";
  FEDCL_CHECK(round > round_) << "BeginRound(" << round << ") after round " << round_;
  round_ = round;
  round_open_ = true;
}

absl::Status ModuleAggregator::CheckWeight(double weight) const {
  if (AggregatorUsesClientWeight(options_.kind)) {
    if (!std::isfinite(weight) || !(weight > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          AggregatorKindName(options_.kind), ": fold weight must be finite and > 0, got ", weight));
    }
  } else if (weight != 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(AggregatorKindName(options_.kind), ": fold weight must be 1, got ", weight));
  }
  return absl::OkStatus();
}

absl::Status ModuleAggregator::Fold(ClientId client, absl::Span<const float> delta, double weight) {
  FEDCL_RETURN_IF_ERROR(CheckWeight(weight));
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
  if (!keeps_client_vectors()) {
    FEDCL_RETURN_IF_ERROR(round_sum_.Add(delta, weight));
  } else {
    auto it = client_vectors_.find(client);
    absl::Span<const float> old_y;
    if (it != client_vectors_.end()) old_y = it->second;
    // FedVARP: Σ_S (Δ_n − y_n), Σ y_j moves at the close. MIFA: Σ y_j moves now.
    FixedPointAccumulator& sum =
        options_.kind == AggregatorKind::kFedVarp ? round_sum_ : memory_sum_;
    FEDCL_RETURN_IF_ERROR(sum.AddDifference(delta, old_y, 1.0));
    if (it == client_vectors_.end()) it = client_vectors_.try_emplace(client).first;
    it->second.assign(delta.begin(), delta.end());
  }
  folded_.insert(client);
  return absl::OkStatus();
}

absl::Status ModuleAggregator::CheckFinish(int64_t participants, int64_t enrolled,
                                           absl::Span<float> params) const {
  if (!round_open_) return absl::FailedPreconditionError("FinishRound with no round open");
  if (static_cast<int64_t>(params.size()) != size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("params have ", params.size(), " values, the module ", size_));
  }
  const int64_t folded = static_cast<int64_t>(folded_.size());
  if (participants < folded) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", round_, ": ", participants, " participants but ", folded, " clients folded"));
  }
  bool divides_by_n = false;
  switch (options_.kind) {
    case AggregatorKind::kAdaptive:
    case AggregatorKind::kKnownProb:
    case AggregatorKind::kAverageAll:
      divides_by_n = folded > 0;
      break;
    case AggregatorKind::kAverageParticipating:
      break;
    case AggregatorKind::kFedVarp:
      divides_by_n = participants > 0 && !client_vectors_.empty();
      break;
    case AggregatorKind::kMifa:
      divides_by_n = !client_vectors_.empty();
      break;
  }
  if (divides_by_n && enrolled < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", round_, ": ", AggregatorKindName(options_.kind), " divides by N = ", enrolled));
  }
  return absl::OkStatus();
}

absl::Status ModuleAggregator::ApplyUpdate(int64_t participants, int64_t enrolled,
                                           absl::Span<float> params) {
  const double gamma = options_.global_learning_rate;
  switch (options_.kind) {
    case AggregatorKind::kAdaptive:
    case AggregatorKind::kKnownProb:
    case AggregatorKind::kAverageAll:
      if (folded_.empty()) return absl::OkStatus();
      return round_sum_.DrainInto(params, gamma / static_cast<double>(enrolled));
    case AggregatorKind::kAverageParticipating:
      if (folded_.empty()) return absl::OkStatus();
      return round_sum_.DrainInto(params, gamma / static_cast<double>(participants));
    case AggregatorKind::kFedVarp: {
      if (participants == 0) return absl::OkStatus();  // the reference code's v = 0
      FEDCL_RETURN_IF_ERROR(memory_sum_.CheckCanAddAccumulator(round_sum_));
      const double scale_n = client_vectors_.empty() ? 0.0 : gamma / static_cast<double>(enrolled);
      FEDCL_RETURN_IF_ERROR(FixedPointAccumulator::ReadCombinationInto(
          params, round_sum_, gamma / static_cast<double>(participants), memory_sum_, scale_n));
      FEDCL_CHECK_OK(memory_sum_.AddAccumulator(round_sum_));  // checked above
      memory_sum_.Tighten();
      return absl::OkStatus();
    }
    case AggregatorKind::kMifa:
      if (client_vectors_.empty()) return absl::OkStatus();
      FEDCL_RETURN_IF_ERROR(memory_sum_.ReadInto(params, gamma / static_cast<double>(enrolled)));
      memory_sum_.Tighten();
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status ModuleAggregator::FinishRound(int64_t participants, int64_t enrolled,
                                           absl::Span<float> params) {
  absl::MutexLock lock(&mu_);
  FEDCL_RETURN_IF_ERROR(CheckFinish(participants, enrolled, params));
  FEDCL_RETURN_IF_ERROR(ApplyUpdate(participants, enrolled, params));
  // The FedAU family drained its sum while applying it; FedVARP's moved into Σ y_j.
  if (options_.kind == AggregatorKind::kFedVarp && !folded_.empty()) round_sum_.Clear();
  folded_.clear();
  round_open_ = false;
  return absl::OkStatus();
}

ClientVectors ModuleAggregator::ExportMemory() const {
  absl::MutexLock lock(&mu_);
  ClientVectors memory(client_vectors_.begin(), client_vectors_.end());
  std::sort(memory.begin(), memory.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return memory;
}

absl::Status ModuleAggregator::ImportMemory(const ClientVectors& memory) {
  if (!keeps_client_vectors() && !memory.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        AggregatorKindName(options_.kind), " keeps no per-client vectors, got ", memory.size()));
  }
  absl::flat_hash_map<ClientId, std::vector<float>> vectors;
  FixedPointAccumulator sum(keeps_client_vectors() ? size_ : 0, arena_);
  for (const auto& [client, y] : memory) {
    if (static_cast<int64_t>(y.size()) != size_) {
      return absl::InvalidArgumentError(absl::StrCat("stored vector of client ", client, " has ",
                                                     y.size(), " values, the module ", size_));
    }
    FEDCL_RETURN_IF_ERROR(CheckFinite(y, absl::StrCat("stored vector of client ", client)));
    if (!vectors.try_emplace(client, y).second) {
      return absl::InvalidArgumentError(absl::StrCat("client ", client, " is stored twice"));
    }
    FEDCL_RETURN_IF_ERROR(sum.Add(y, 1.0));
  }
  sum.Tighten();
  absl::MutexLock lock(&mu_);
  if (!folded_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ImportMemory during round ", round_, ", which has folds"));
  }
  client_vectors_ = std::move(vectors);
  memory_sum_ = std::move(sum);
  return absl::OkStatus();
}

absl::Status ModuleAggregator::ForgetClient(ClientId client) {
  absl::MutexLock lock(&mu_);
  auto it = client_vectors_.find(client);
  if (it == client_vectors_.end()) return absl::OkStatus();
  if (folded_.contains(client)) {
    return absl::FailedPreconditionError(
        absl::StrCat("client ", client, " folded in the open round ", round_));
  }
  FEDCL_RETURN_IF_ERROR(memory_sum_.Subtract(it->second, 1.0));
  client_vectors_.erase(it);
  return absl::OkStatus();
}

int64_t ModuleAggregator::memory_bytes() const {
  absl::MutexLock lock(&mu_);
  int64_t bytes = round_sum_.memory_bytes() + memory_sum_.memory_bytes();
  for (const auto& [client, y] : client_vectors_) {
    bytes += static_cast<int64_t>(y.capacity() * sizeof(float));
  }
  bytes += static_cast<int64_t>(client_vectors_.capacity() *
                                (sizeof(std::pair<ClientId, std::vector<float>>) + 1));
  bytes += static_cast<int64_t>(folded_.capacity() * (sizeof(ClientId) + 1));
  return bytes;
}

}  // namespace fedcl::fl
