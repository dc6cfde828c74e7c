// FedAWE, "adaptive innovation echoing" and "implicit gossiping" (Xiang et al., NeurIPS 2024;
// algorithms-next.md §2.2 is the contract, read from the authors' code). With S_t the round's
// participants and m = |S_t|:
//   each client n trains from its base w_n, the module as it was after the last round n took
//   part in, not from x^t: Δ_n = y_n − w_n;
//   τ_n = the rounds since n last took part, this one counted (FedAU's interval with K = ∞);
//   x^{t+1} = (1/m)·Σ_{S_t} w_n + γ·clip((1/m)·Σ_{S_t} τ_n·Δ_n, r)   (x unchanged when m = 0)
//   w_n ← x^{t+1} for n ∈ S_t
// with clip(v, r) = v·r/‖v‖ when ‖v‖ > r. r = 0.5 as in the reference (option `clip_radius`;
// 0 turns the clip off). The echo factor τ_n is the fold weight (ClientWeight).
//
// Where the bases live. The reference simulator holds all N local copies on the server; so does
// this rule, deduplicated: a client's base is a module version (the one the module got at the
// close of its last round), and the state keeps one copy of each version that is still somebody's
// base, so at most min(N, rounds) copies of d floats (memory_bytes counts them). The coordinator
// lists a base module to a client at its base version and serves that version's values, and the
// device trains from what it downloaded and names that version, as any device does: nothing new
// on the wire. The echo sum is exact fixed point; the bases' mean is summed by version in
// increasing order, so the close does not depend on the order in which updates arrived.
//
// Departures from the reference code, pinned:
//   - A client that has never taken part trains from the current module. The reference starts
//     every local copy at x^0 because all of its clients exist from round 0; a device that joins
//     a running federation has no copy of x^0, and keeping x^0 for it forever would cost a model.
//   - τ_n counts from the client's enrolment, as FedAU's counter does (enrolled at round r, first
//     taking part at t: τ = t − r + 1); the reference's clients all enrol at 0, which gives t + 1.
//   - The clip is per module: fedcl aggregates each module on its own; the reference clips the
//     whole model's echoed update at once. For a federation of one module they are the same.
//   - Synchronous rounds only (the coordinator refuses an asynchronous policy): under FedBuff a
//     base would be both stale and echoed, which the paper does not define.
//
// Memory export: one vector per client with a base, key = the client, its d base values followed
// by the base version as two floats (version / 2^24, version mod 2^24, both integers and exact in
// float), so a restarted server serves and folds the same bases.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"
#include "core/fl/aggregation_rule.h"
#include "core/fl/fedau_estimator.h"
#include "core/fl/fixed_point_accumulator.h"

namespace fedcl::fl {
namespace {

constexpr int64_t kVersionRadix = int64_t{1} << 24;  // integers below it are exact in float

class FedAweState final : public ModuleRuleState {
 public:
  FedAweState(int64_t size, tbb::task_arena* arena, double gamma, double clip_radius)
      : size_(size), echo_(size, arena), gamma_(gamma), clip_radius_(clip_radius) {}

  absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight) override {
    FEDCL_RETURN_IF_ERROR(echo_.Add(delta, weight));  // E += τ_n·Δ_n
    if (auto base = base_of_.find(client); base != base_of_.end()) {
      ++round_bases_[base->second];
    } else {
      ++round_fresh_;  // trained from the current module, which Finish reads
    }
    round_clients_.push_back(client);
    return absl::OkStatus();
  }

  absl::Status CheckFinish(const RoundTotals& totals) const override { return absl::OkStatus(); }

  absl::Status Finish(const RoundTotals& totals, absl::Span<float> params) override {
    const int64_t m = static_cast<int64_t>(round_clients_.size());
    if (m == 0) return absl::OkStatus();
    // Σ w_n: the fresh participants' base is the current module.
    const std::vector<double> next = SumOfBases(round_bases_, round_fresh_, params);
    // clip((1/m)·E, r), the norm over the module.
    const double inv_m = 1.0 / static_cast<double>(m);
    double squared_norm = 0.0;
    for (int64_t i = 0; i < size_; ++i) {
      const double e = echo_.value(i) * inv_m;
      squared_norm += e * e;
    }
    const double norm = std::sqrt(squared_norm);
    const double clip = clip_radius_ > 0.0 && norm > clip_radius_ ? clip_radius_ / norm : 1.0;
    const double echo_scale = gamma_ * clip * inv_m;
    for (int64_t i = 0; i < size_; ++i) {
      params[i] = static_cast<float>(next[i] * inv_m + echo_scale * echo_.value(i));
    }
    // The participants' new base: the module after this close, version round + 1.
    const int64_t version = totals.round + 1;
    auto values = std::make_shared<const std::vector<float>>(params.begin(), params.end());
    for (ClientId client : round_clients_) SetBase(client, version, values);
    echo_.Clear();
    round_bases_.clear();
    round_fresh_ = 0;
    round_clients_.clear();
    return absl::OkStatus();
  }

  std::optional<int64_t> ClientBaseVersion(ClientId client) const override {
    auto it = base_of_.find(client);
    if (it == base_of_.end()) return std::nullopt;
    return it->second;
  }

  std::shared_ptr<const std::vector<float>> BaseValues(int64_t version) const override {
    auto it = bases_.find(version);
    return it == bases_.end() ? nullptr : it->second.values;
  }

  std::vector<float> MeanClientBase(int64_t clients,
                                    absl::Span<const float> current) const override {
    if (clients < 1) return std::vector<float>(current.begin(), current.end());
    const int64_t without = std::max<int64_t>(0, clients - static_cast<int64_t>(base_of_.size()));
    std::map<int64_t, int64_t> clients_by_version;
    for (const auto& [version, base] : bases_) clients_by_version[version] = base.clients;
    const std::vector<double> sum = SumOfBases(clients_by_version, without, current);
    const double n = static_cast<double>(without + static_cast<int64_t>(base_of_.size()));
    std::vector<float> mean(sum.size());
    for (size_t i = 0; i < sum.size(); ++i) mean[i] = static_cast<float>(sum[i] / n);
    return mean;
  }

  ClientVectors ExportMemory() const override {
    ClientVectors memory;
    memory.reserve(base_of_.size());
    for (const auto& [client, version] : base_of_) {
      std::vector<float> v = *bases_.at(version).values;
      v.push_back(static_cast<float>(version / kVersionRadix));
      v.push_back(static_cast<float>(version % kVersionRadix));
      memory.emplace_back(client, std::move(v));
    }
    std::sort(memory.begin(), memory.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    return memory;
  }

  absl::Status ImportMemory(const ClientVectors& memory) override;

  absl::Status ForgetClient(ClientId client) override {
    auto it = base_of_.find(client);
    if (it == base_of_.end()) return absl::OkStatus();
    Release(it->second);
    base_of_.erase(it);
    return absl::OkStatus();
  }

  int64_t memory_bytes() const override {
    int64_t bytes = echo_.memory_bytes();
    for (const auto& [version, base] : bases_) {
      bytes += static_cast<int64_t>(base.values->capacity() * sizeof(float));
    }
    bytes += static_cast<int64_t>(base_of_.capacity() * (sizeof(ClientId) + sizeof(int64_t) + 1));
    bytes += static_cast<int64_t>(round_clients_.capacity() * sizeof(ClientId));
    return bytes;
  }

 private:
  // Σ count·w_v over `counts` (base version → count) plus current_count·current, in double, the
  // versions in increasing order (so the sum does not depend on the order of the folds).
  std::vector<double> SumOfBases(const std::map<int64_t, int64_t>& counts, int64_t current_count,
                                 absl::Span<const float> current) const {
    std::vector<double> sum(current.size());
    for (size_t i = 0; i < sum.size(); ++i) {
      sum[i] = static_cast<double>(current_count) * current[i];
    }
    for (const auto& [version, count] : counts) {
      const std::vector<float>& base = *bases_.at(version).values;
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += static_cast<double>(count) * base[i];
    }
    return sum;
  }

  struct Base {
    std::shared_ptr<const std::vector<float>> values;
    int64_t clients = 0;  // whose base it is
  };

  void SetBase(ClientId client, int64_t version, std::shared_ptr<const std::vector<float>> values) {
    auto [it, inserted] = base_of_.try_emplace(client, version);
    if (!inserted) {
      if (it->second == version) return;
      Release(it->second);
      it->second = version;
    }
    Base& base = bases_[version];
    if (base.values == nullptr) base.values = std::move(values);
    ++base.clients;
  }

  void Release(int64_t version) {
    auto it = bases_.find(version);
    if (it != bases_.end() && --it->second.clients == 0) bases_.erase(it);
  }

  const int64_t size_;
  FixedPointAccumulator echo_;  // Σ τ_n·Δ_n over the open round's folds
  const double gamma_;
  const double clip_radius_;
  std::map<int64_t, Base> bases_;                   // by version: the bases in use
  absl::flat_hash_map<ClientId, int64_t> base_of_;  // client → its base version
  std::map<int64_t, int64_t> round_bases_;          // base version → folds from it this round
  int64_t round_fresh_ = 0;                         // folds from the current module this round
  std::vector<ClientId> round_clients_;             // folded this round
};

absl::Status FedAweState::ImportMemory(const ClientVectors& memory) {
  std::map<int64_t, Base> bases;
  absl::flat_hash_map<ClientId, int64_t> base_of;
  for (const auto& [client, v] : memory) {
    if (static_cast<int64_t>(v.size()) != size_ + 2) {
      return absl::InvalidArgumentError(absl::StrCat("fedawe memory of client ", client, " has ",
                                                     v.size(), " values, expected ", size_ + 2,
                                                     " (the base and its version)"));
    }
    const float high = v[size_], low = v[size_ + 1];
    if (!(high >= 0 && high < kVersionRadix && low >= 0 && low < kVersionRadix &&
          high == std::floor(high) && low == std::floor(low))) {
      return absl::InvalidArgumentError(absl::StrCat("fedawe memory of client ", client,
                                                     ": the base version is not two integers "
                                                     "in [0, 2^24), got ",
                                                     high, " and ", low));
    }
    const int64_t version = static_cast<int64_t>(high) * kVersionRadix + static_cast<int64_t>(low);
    for (int64_t i = 0; i < size_; ++i) {
      if (!std::isfinite(v[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("fedawe memory of client ", client, ": value ", i, " is not finite"));
      }
    }
    if (!base_of.try_emplace(client, version).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("fedawe memory lists client ", client, " twice"));
    }
    Base& base = bases[version];
    if (base.values == nullptr) {
      base.values = std::make_shared<const std::vector<float>>(v.begin(), v.begin() + size_);
    } else if (!std::equal(base.values->begin(), base.values->end(), v.begin())) {
      return absl::InvalidArgumentError(absl::StrCat("fedawe memory: client ", client,
                                                     " has other values for base version ", version,
                                                     " than an earlier client"));
    }
    ++base.clients;
  }
  bases_ = std::move(bases);
  base_of_ = std::move(base_of);
  return absl::OkStatus();
}

class FedAweRule final : public AggregationRule {
 public:
  FedAweRule(double gamma, double clip_radius) : gamma_(gamma), clip_radius_(clip_radius) {}
  absl::string_view name() const override { return "fedawe"; }
  bool weighted() const override { return true; }
  // τ_n: FedAU's counter holds the last round the client took part in (its enrolment − 1 before
  // the first), so this is the rounds since then, `round` counted.
  double ClientWeight(const ClientRecord& client, int64_t round) const override {
    return static_cast<double>(round - client.fedau.last_round);
  }
  bool keeps_client_memory() const override { return true; }
  bool stores_client_deltas() const override { return false; }
  bool trains_from_client_base() const override { return true; }
  std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                  tbb::task_arena* arena) const override {
    return std::make_unique<FedAweState>(size, arena, gamma_, clip_radius_);
  }

 private:
  const double gamma_;
  const double clip_radius_;
};

}  // namespace

void RegisterFedAweRule(RuleRegistry& registry) {
  registry.Register(
      "fedawe",
      "FedAWE: each client trains from its own last global; the mean of the participants' bases "
      "plus their echoed (τ·Δ), clipped mean delta (O(N·d) memory at most)",
      [](const RuleConfig& config) -> absl::StatusOr<std::unique_ptr<AggregationRule>> {
        FEDCL_ASSIGN_OR_RETURN(base::OptionText options,
                               base::OptionText::Parse(config.options, "rule fedawe"));
        double clip_radius = 0.5;
        FEDCL_RETURN_IF_ERROR(options.Read("clip_radius", &clip_radius));
        FEDCL_RETURN_IF_ERROR(options.CheckAllRead());
        if (!(clip_radius >= 0 && std::isfinite(clip_radius))) {
          return absl::InvalidArgumentError(absl::StrCat(
              "rule fedawe: clip_radius must be finite and >= 0 (0: no clip), got ", clip_radius));
        }
        return std::make_unique<FedAweRule>(config.global_learning_rate, clip_radius);
      });
}

}  // namespace fedcl::fl
