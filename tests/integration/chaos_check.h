// The chaos test's judge: from the devices' ledgers (chaos_ledger.h) and what the server recorded,
// which acknowledged updates the server lost or counted twice, and whether its final module equals
// an independent recomputation from the acknowledged updates.
//
// The recomputation applies the server's rule (average_participating, γ = 1: each closed round
// moves the module by the mean of its participants' deltas) in double precision to the
// acknowledged updates of each closed round, rounding to float after each round as the server
// stores float32. The server sums in fixed point (units of 2^-36, each term rounded once), so its
// values may differ from this in the last bit; they are compared within kTolerance.
//
// Because every learning step moves a coordinate of its own (chaos_device_main.cc), each
// acknowledged update is also accounted for one by one: the server's final value at the
// coordinates of its steps says whether it was folded zero, one or two times. An update of the
// round still open is looked for in the server's journal instead.
#ifndef FEDCL_TESTS_INTEGRATION_CHAOS_CHECK_H_
#define FEDCL_TESTS_INTEGRATION_CHAOS_CHECK_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/chaos_ledger.h"

namespace fedcl::testing {

inline constexpr double kTolerance = 1e-6;

// What the server recorded, read after it stopped.
struct ServerRecord {
  std::vector<float> initial;                      // the module before round 0
  std::vector<float> final_values;                 // the module after the last closed round
  std::map<int64_t, int64_t> closed;               // closed round -> participants (its round log)
  int64_t open_round = -1;                         // the round open at the end
  std::map<uint64_t, int64_t> open_round_entries;  // client -> journal records of open_round
  std::map<uint64_t, std::map<int64_t, float>> open_round_values;  // client -> nonzero values
  std::map<uint64_t, int64_t> participations;  // client -> closed rounds it counted in
};

struct ChaosVerdict {
  int64_t acknowledged = 0;    // distinct (client, round) acknowledged
  int64_t duplicate_acks = 0;  // acknowledgements of a replay (lost replies resolved)
  int64_t lost = 0;            // acknowledged, not counted
  int64_t double_counted = 0;  // counted more than once (or its learning in two updates)
  int64_t steps_learned = 0, steps_acknowledged = 0;
  int64_t mismatched_values = 0;      // coordinates where the server differs from the recomputation
  std::vector<std::string> problems;  // each finding in words (lost and double counts included)
};

// `ledgers` maps each device's client id to its ledger; `first_index` to the coordinate of its
// step 0.
ChaosVerdict Judge(const std::map<uint64_t, LedgerContents>& ledgers,
                   const std::map<uint64_t, int64_t>& first_index, const ServerRecord& server);

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_INTEGRATION_CHAOS_CHECK_H_
