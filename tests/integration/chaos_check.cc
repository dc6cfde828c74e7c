#include "tests/integration/chaos_check.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"

namespace fedcl::testing {
namespace {

// One acknowledged update: its (client, round) and the values it carried.
struct Acked {
  uint64_t client = 0;
  int64_t round = 0;
  std::map<int64_t, float> values;
};

// A ledger step's value may differ from the value sent by the rounding of live − committed.
constexpr double kStepTolerance = 1e-5;

// The acknowledged updates of one device, checking that every send of an acknowledged round
// carried the same values (a replay must be the update the server may already hold).
void CollectAcked(uint64_t client, const LedgerContents& ledger, std::vector<Acked>& acked,
                  ChaosVerdict& v) {
  std::map<int64_t, std::vector<const LedgerSend*>> sends;
  for (const LedgerSend& s : ledger.sends) sends[s.round].push_back(&s);
  std::set<int64_t> rounds;
  for (const LedgerAnswer& a : ledger.answers) {
    if (a.kind != LedgerAnswer::Kind::kAck) continue;
    if (a.duplicate) ++v.duplicate_acks;
    if (!a.duplicate && a.weight != 1.0) {
      v.problems.push_back(absl::StrCat("client ", client, " round ", a.round, ": weight ",
                                        a.weight, ", not average_participating's 1"));
    }
    rounds.insert(a.round);
  }
  for (int64_t round : rounds) {
    const auto it = sends.find(round);
    if (it == sends.end()) {
      v.problems.push_back(absl::StrCat("client ", client, " round ", round,
                                        ": acknowledged, but no send is recorded"));
      continue;
    }
    for (const LedgerSend* s : it->second) {
      if (s->nonzero != it->second.front()->nonzero) {
        v.problems.push_back(absl::StrCat("client ", client, " round ", round,
                                          ": the update changed between its sends"));
        break;
      }
    }
    acked.push_back({client, round, it->second.front()->nonzero});
  }
}

// Each acknowledged update is made of this device's steps, and no step is in two of them (the
// same learning counted in two rounds).
void AccountSteps(uint64_t client, const LedgerContents& ledger, int64_t first_index,
                  const std::vector<Acked>& acked, ChaosVerdict& v) {
  std::map<int64_t, const LedgerStep*> steps;
  for (const LedgerStep& s : ledger.steps) steps[s.step] = &s;
  v.steps_learned += static_cast<int64_t>(steps.size());
  std::map<int64_t, int64_t> owner;  // step -> the round whose acknowledged update carried it
  for (const Acked& a : acked) {
    if (a.client != client) continue;
    for (const auto& [index, value] : a.values) {
      const int64_t k = index - first_index;
      const auto step = steps.find(k);
      if (step == steps.end() || std::abs(step->second->value - value) > kStepTolerance) {
        v.problems.push_back(absl::StrCat("client ", client, " round ", a.round, ": coordinate ",
                                          index, " = ", value, " is none of its steps"));
        continue;
      }
      const auto [it, fresh] = owner.emplace(k, a.round);
      if (!fresh) {
        ++v.double_counted;
        v.problems.push_back(absl::StrCat("client ", client, ": step ", k,
                                          " was acknowledged in round ", it->second,
                                          " and again in round ", a.round));
      }
    }
  }
  v.steps_acknowledged += static_cast<int64_t>(owner.size());
}

// How many times the server folded update `a` of a closed round with `n` participants, from its
// coordinates in the final module; -1 if the values fit no whole number.
int64_t FoldedTimes(const Acked& a, int64_t n, const ServerRecord& server) {
  int64_t times = -2;
  for (const auto& [index, value] : a.values) {
    const size_t i = static_cast<size_t>(index);
    if (i >= server.final_values.size()) return -1;
    const double moved = static_cast<double>(server.final_values[i]) - server.initial[i];
    const double once = static_cast<double>(value) / static_cast<double>(n);
    const int64_t m = std::llround(moved / once);
    if (std::abs(moved - static_cast<double>(m) * once) > kStepTolerance) return -1;
    if (times != -2 && m != times) return -1;
    times = m;
  }
  return times == -2 ? -1 : times;
}

void CheckCounted(const std::vector<Acked>& acked, const std::map<int64_t, int64_t>& per_round,
                  const ServerRecord& server, ChaosVerdict& v) {
  for (const Acked& a : acked) {
    const std::string who = absl::StrCat("client ", a.client, " round ", a.round, ": ");
    int64_t times = 0;
    if (a.round == server.open_round) {
      const auto entries = server.open_round_entries.find(a.client);
      times = entries == server.open_round_entries.end() ? 0 : entries->second;
      const auto values = server.open_round_values.find(a.client);
      bool same =
          values != server.open_round_values.end() && values->second.size() == a.values.size();
      for (const auto& [index, value] : a.values) {
        same = same && values->second.contains(index) &&
               std::abs(values->second.at(index) - value) <= kTolerance;
      }
      if (times > 0 && !same) {
        v.problems.push_back(who + "the journal holds other values than were acknowledged");
      }
    } else if (server.closed.contains(a.round)) {
      times = FoldedTimes(a, per_round.at(a.round), server);
      if (times < 0) {
        v.problems.push_back(who + "the final module fits no whole number of folds of it");
        continue;
      }
    }
    if (times == 0) {
      ++v.lost;
      v.problems.push_back(who + "acknowledged, never counted");
    } else if (times > 1) {
      v.double_counted += times - 1;
      v.problems.push_back(absl::StrCat(who, "counted ", times, " times"));
    }
  }
}

// The server's own records against the acknowledged updates: participants per closed round,
// participations per client, the open round's journal.
void CheckServerRecords(const std::vector<Acked>& acked,
                        const std::map<int64_t, int64_t>& per_round, const ServerRecord& server,
                        ChaosVerdict& v) {
  for (const auto& [round, participants] : server.closed) {
    const auto it = per_round.find(round);
    const int64_t expected = it == per_round.end() ? 0 : it->second;
    if (participants != expected) {
      v.problems.push_back(absl::StrCat("round ", round, ": the server counted ", participants,
                                        " participants, ", expected, " were acknowledged"));
    }
  }
  std::map<uint64_t, int64_t> closed_acks;
  std::set<uint64_t> acked_open;
  for (const Acked& a : acked) {
    if (server.closed.contains(a.round)) ++closed_acks[a.client];
    if (a.round == server.open_round) acked_open.insert(a.client);
  }
  for (const auto& [client, participations] : server.participations) {
    const int64_t expected = closed_acks.contains(client) ? closed_acks.at(client) : 0;
    if (participations != expected) {
      v.problems.push_back(absl::StrCat("client ", client, ": the server counts ", participations,
                                        " participations, ", expected, " were acknowledged"));
    }
  }
  for (const auto& [client, entries] : server.open_round_entries) {
    if (!acked_open.contains(client)) {
      v.problems.push_back(absl::StrCat("client ", client, ": counted in the open round ",
                                        server.open_round, " but never acknowledged"));
    }
  }
}

// The independent recomputation of the whole module.
void Recompute(const std::vector<Acked>& acked, const std::map<int64_t, int64_t>& per_round,
               const ServerRecord& server, ChaosVerdict& v) {
  std::vector<float> expected = server.initial;
  std::map<int64_t, std::map<int64_t, double>> sums;  // round -> coordinate -> Σ values
  for (const Acked& a : acked) {
    if (!server.closed.contains(a.round)) continue;
    for (const auto& [index, value] : a.values) sums[a.round][index] += value;
  }
  for (const auto& [round, sum] : sums) {
    const double n = static_cast<double>(per_round.at(round));
    for (const auto& [index, total] : sum) {
      if (static_cast<size_t>(index) >= expected.size()) continue;  // reported by AccountSteps
      float& x = expected[static_cast<size_t>(index)];
      x = static_cast<float>(static_cast<double>(x) + total / n);
    }
  }
  if (expected.size() != server.final_values.size()) {
    v.problems.push_back("the final module has another size than the initial one");
    return;
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::abs(static_cast<double>(expected[i]) - server.final_values[i]) > kTolerance) {
      if (v.mismatched_values++ < 5) {
        v.problems.push_back(absl::StrCat("coordinate ", i, ": the server has ",
                                          server.final_values[i], ", the recomputation ",
                                          expected[i]));
      }
    }
  }
}

}  // namespace

ChaosVerdict Judge(const std::map<uint64_t, LedgerContents>& ledgers,
                   const std::map<uint64_t, int64_t>& first_index, const ServerRecord& server) {
  ChaosVerdict v;
  std::vector<Acked> acked;
  for (const auto& [client, ledger] : ledgers) CollectAcked(client, ledger, acked, v);
  for (const auto& [client, ledger] : ledgers)
    AccountSteps(client, ledger, first_index.at(client), acked, v);
  v.acknowledged = static_cast<int64_t>(acked.size());
  std::map<int64_t, int64_t> per_round;  // acknowledged updates per round
  for (const Acked& a : acked) ++per_round[a.round];
  CheckCounted(acked, per_round, server, v);
  CheckServerRecords(acked, per_round, server, v);
  Recompute(acked, per_round, server, v);
  return v;
}

}  // namespace fedcl::testing
