// Aggregation rules behind one interface, with a name registry: how the server weights a client's
// update, folds it, and moves a module at the close of a round.
//
//   fl::RuleConfig config{.name = "adaptive", .global_learning_rate = 1.0};
//   FEDCL_ASSIGN_OR_RETURN(std::shared_ptr<const fl::AggregationRule> rule,
//                          fl::CreateAggregationRule(config));
//   double w = rule->ClientWeight(record, round);           // FedAU: ω_n; known_prob: 1/p_n
//   std::unique_ptr<fl::ModuleRuleState> state = rule->NewModuleState(module_size, &arena);
//   FEDCL_RETURN_IF_ERROR(state->Fold(client, delta, w));    // once per accepted update
//   FEDCL_RETURN_IF_ERROR(state->Finish(totals, params));    // at the close
//
// ModuleAggregator (aggregator.h) owns the round bookkeeping around a rule's state (which round
// is open, which clients folded, the lock); a rule only says what to sum and how to apply it.
// Every sum goes through a FixedPointAccumulator, so a round's result is bit-for-bit independent
// of arrival order and thread count whatever the rule.
//
// A new rule is one file under core/fl/rules/ (a class deriving from AggregationRule, its state,
// and a `Register<Name>Rule` function) plus one line in core/fl/rules/builtin_rules.cc; its own
// knobs come as RuleConfig::options, a scalar text proto it parses with base::OptionText.
//
// Memory a rule keeps across rounds (FedVARP's and MIFA's per-client vectors, a server
// optimiser's moments) is exported as keyed vectors: the key is a client id for per-client
// state, or a slot the rule defines for server state. Hosts persist them as they are
// (StateStore's AggregatorMemory), and ImportMemory into a fresh state continues bit-identically.
#ifndef FEDCL_CORE_FL_AGGREGATION_RULE_H_
#define FEDCL_CORE_FL_AGGREGATION_RULE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/fl/fedau_estimator.h"
#include "core/fl/state_store.h"
#include "tbb/task_arena.h"

namespace fedcl::fl {

// Vectors a rule keeps across rounds, sorted by key (see the top of this file).
using ClientVectors = std::vector<std::pair<ClientId, std::vector<float>>>;

// What the coordinator knows at a module's close.
struct RoundTotals {
  int64_t round = 0;
  // |S_t|: clients whose update of this module was accepted (at least the number folded).
  int64_t participants = 0;
  // N: the enrolled clients (the module's holders, for a pool expert).
  int64_t enrolled = 0;
  // Clients folded into this module in the round.
  int64_t folded = 0;
};

// One module's state under a rule. Not thread-safe: ModuleAggregator serialises every call.
class ModuleRuleState {
 public:
  virtual ~ModuleRuleState() = default;

  // Folds `client`'s delta (right size and a weight the rule accepts: both checked by the
  // caller) for the open round. Errors leave the state unchanged: InvalidArgument for a
  // non-finite value, OutOfRange if a fixed-point sum would overflow.
  virtual absl::Status Fold(ClientId client, absl::Span<const float> delta, double weight) = 0;

  // InvalidArgument if Finish could not apply `totals` (e.g. a rule that divides by N with
  // N = 0 while it has something to apply). Called before Finish; changes nothing.
  virtual absl::Status CheckFinish(const RoundTotals& totals) const = 0;

  // Applies the round's update to `params` (the module's flat values) and readies the state for
  // the next round. Called only after CheckFinish passed. Errors (OutOfRange on an overflow)
  // leave `params` unchanged.
  virtual absl::Status Finish(const RoundTotals& totals, absl::Span<float> params) = 0;

  // The memory kept across rounds, sorted by key; empty for a rule that keeps none.
  virtual ClientVectors ExportMemory() const { return {}; }
  // Replaces the memory with `memory` (from ExportMemory of a state of the same rule and size).
  // InvalidArgument for memory given to a rule that keeps none, a vector of the wrong size or
  // with a non-finite value, or a key listed twice; OutOfRange if a sum would overflow. Nothing
  // changes on an error.
  virtual absl::Status ImportMemory(const ClientVectors& memory);
  // Drops `client`'s per-client memory (it left and no longer counts in N); no-op if none.
  virtual absl::Status ForgetClient(ClientId client) { return absl::OkStatus(); }

  // Rules whose clients train from a base of their own (AggregationRule::
  // trains_from_client_base): the module version `client` trains from, or nullopt for the
  // current one (a client with no base yet).
  virtual std::optional<int64_t> ClientBaseVersion(ClientId client) const { return std::nullopt; }
  // The values of `version` if it is some client's base, else null.
  virtual std::shared_ptr<const std::vector<float>> BaseValues(int64_t version) const {
    return nullptr;
  }
  // The mean of `clients` clients' bases, those without one counting as `current`: FedAWE's
  // reference evaluation point (the average of all local copies). Empty for other rules.
  virtual std::vector<float> MeanClientBase(int64_t clients,
                                            absl::Span<const float> current) const {
    return {};
  }

  // Heap bytes held.
  virtual int64_t memory_bytes() const = 0;
};

// How a rule is configured. Hosts fill it from their configs (proto/ maps the text configs).
struct RuleConfig {
  std::string name = "adaptive";  // a registered rule (RegisteredRuleNames())
  // γ, the server (global) learning rate; finite and > 0.
  double global_learning_rate = 1.0;
  // FedAU's interval cutoff K (0 = kFedAuNoCutoff = ∞), >= 0. Rules that read FedAU weights
  // take it; the others ignore it.
  int64_t fedau_cutoff = kFedAuNoCutoff;
  // known_prob: each client's participation probability p_n in (0, 1]; not owned, may be null
  // (then every client lacks one). Must outlive the rule.
  const std::map<ClientId, double>* participation_probability = nullptr;
  // The rule's own knobs, a scalar text proto (base::OptionText), e.g. "beta1: 0.9 tau: 1e-3".
  std::string options;
};

class AggregationRule {
 public:
  virtual ~AggregationRule() = default;

  // The registered name ("adaptive", "known_prob", ...).
  virtual absl::string_view name() const = 0;

  // True if Fold takes a per-client weight (ClientWeight); false if every fold weight is 1.
  virtual bool weighted() const { return false; }

  // The fold weight of `client`'s update in `round`: finite and > 0, or 0 if the client cannot
  // take part under this rule (known_prob without a p_n), which the coordinator refuses.
  // Unweighted rules return 1.
  virtual double ClientWeight(const ClientRecord& client, int64_t round) const { return 1.0; }

  // True if the rule keeps per-client memory (O(N·d)).
  virtual bool keeps_client_memory() const { return false; }
  // True if that memory is the clients' last deltas, folded into the rule's sums (FedVARP,
  // MIFA): the coordinator then bounds their magnitudes with the round's.
  virtual bool stores_client_deltas() const { return keeps_client_memory(); }
  // True if each client trains from a base of its own rather than the current module (FedAWE):
  // the coordinator lists and serves a base module at ModuleRuleState::ClientBaseVersion, takes
  // deltas trained from that version, and gives the module version round + 1 at every close
  // that folded something (the participants' new base), even if its values did not change.
  virtual bool trains_from_client_base() const { return false; }

  // True if ClientWeight is an estimate of 1/p_n (FedAU): hosts that know p_n (the simulator)
  // report how far the weights are from it.
  virtual bool estimates_inverse_participation() const { return false; }
  // True if ClientWeight needs RuleConfig::participation_probability (known_prob, an oracle).
  virtual bool needs_participation_probability() const { return false; }

  // A zero state for a module of `size` floats, summing on `arena` (not owned; null = the
  // calling thread only; must outlive the state).
  virtual std::unique_ptr<ModuleRuleState> NewModuleState(int64_t size,
                                                          tbb::task_arena* arena) const = 0;

  // InvalidArgument if `weight` is not one this rule folds (not finite and > 0 for a weighted
  // rule, not exactly 1 for the others).
  absl::Status CheckWeight(double weight) const;
};

// Builds a rule from its config. InvalidArgument naming the field for an unknown name (listing
// the registered ones), a bad γ or cutoff, or options the rule refuses.
absl::StatusOr<std::shared_ptr<const AggregationRule>> CreateAggregationRule(
    const RuleConfig& config);

// The registry. A rule registers a factory under its name (and optional aliases) once, from
// RegisterBuiltinRules (rules/builtin_rules.cc); CreateAggregationRule looks names up here.
using RuleFactory =
    std::function<absl::StatusOr<std::unique_ptr<AggregationRule>>(const RuleConfig& config)>;
class RuleRegistry {
 public:
  // Registers `factory` under `name`. A name registered twice is a bug (checked).
  void Register(absl::string_view name, absl::string_view summary, RuleFactory factory);
  const RuleFactory* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;
  std::string Summary(absl::string_view name) const;

 private:
  std::map<std::string, std::pair<std::string, RuleFactory>, std::less<>> rules_;
};
// The process's registry, with every built-in rule registered on first use (thread-safe).
const RuleRegistry& AggregationRules();
// Called once by AggregationRules(); defined in rules/builtin_rules.cc.
void RegisterBuiltinRules(RuleRegistry& registry);

// InvalidArgument unless config.options is empty: for rules that have no knobs of their own.
absl::Status RefuseRuleOptions(const RuleConfig& config);

// Registers `Rule`, a rule without knobs of its own constructed from the config, under `name`.
template <typename Rule>
void RegisterRuleWithoutOptions(RuleRegistry& registry, absl::string_view name,
                                absl::string_view summary) {
  registry.Register(
      name, summary,
      [](const RuleConfig& config) -> absl::StatusOr<std::unique_ptr<AggregationRule>> {
        if (absl::Status refused = RefuseRuleOptions(config); !refused.ok()) {
          return refused;
        }
        return std::make_unique<Rule>(config);
      });
}

// Sorted registered names, for messages and help texts.
std::vector<std::string> RegisteredRuleNames();

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_AGGREGATION_RULE_H_
