// Who takes part in each simulated round: participation probabilities p_n and the patterns of
// algorithms.md §1.6 (Bernoulli, Markovian, cyclic), availability traces, and the non-stationary
// patterns FedAWE is evaluated on (algorithms-next.md §2.4), whose probability drifts with the
// round: a sine of amplitude a, the sine that forces low probabilities to zero, and a square wave.
//
//   FEDCL_ASSIGN_OR_RETURN(sim::PatternSpec pattern, sim::ParsePattern("markov-0.05"));
//   FEDCL_ASSIGN_OR_RETURN(auto process,
//                          sim::ParticipationProcess::Create(pattern, p, seed, /*trace=*/nullptr));
//   for (int64_t t = 0; t < rounds; ++t) {
//     process->Advance(t);                         // rounds in order, each once
//     for (uint32_t n : process->Participants(0, num_clients)) ...
//   }
//
// Every random draw comes from a stream keyed by (seed, client, round) (base::Rng::ForStream), so
// a shard that advances only clients [first, last) draws exactly what a single process does for
// them: sharding and thread count change nothing. The reference code draws from one global numpy
// generator instead; the distributions are the same, the individual draws are not.
//
// A dormant client costs 8 bytes here: its p_n as a float and one packed word of pattern state.
#ifndef FEDCL_SIM_WORLD_PARTICIPATION_H_
#define FEDCL_SIM_WORLD_PARTICIPATION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sim/world/trace.h"

namespace fedcl::sim {

enum class PatternKind { kBernoulli, kMarkov, kCyclic, kTrace, kSine, kSineCutoff, kSquare };

struct PatternSpec {
  PatternKind kind = PatternKind::kBernoulli;
  double markov_a = 0.0;        // kMarkov: inactive→active transition probability, in (0, 1]
  int cyclic_length = 0;        // kCyclic: cycle length L in rounds, in [2, 1000000]
  double sine_amplitude = 0.0;  // kSine: a in (0, 1]
  std::string name;  // as written: "bernoulli", "markov-0.05", "cyclic-100", "trace", "sine-0.3"
};

// "bernoulli", "markov-<a>", "cyclic-<L>", "trace", "sine-<a>", "sine-cutoff" or "square";
// InvalidArgument naming the problem.
absl::StatusOr<PatternSpec> ParsePattern(absl::string_view text);

// Non-stationary patterns (FedAWE's generators, read from its code; algorithms-next.md §2.4):
// each round is a Bernoulli draw with probability p_n^t, clipped to [0, 1]:
//   sine-<a>     (a·sin(2πt/20) + 1 − a)·p_n; the reference runs a = 0.3, 0.2, 0.1
//   sine-cutoff  v = (0.3·sin(2πt/20) + 0.7)·p_n, and 0 where v < 0.1 (an absolute threshold:
//                clients with small p_n never take part)
//   square       0.4·p_n in rounds t with ⌊t/10⌋ odd, p_n otherwise
// For the stationary patterns it is p_n. The period (20 rounds) and the square wave's half
// period (10) are the reference's.
double RoundProbability(const PatternSpec& pattern, double p, int64_t round);
// A client's long-run participation rate under `pattern`: p_n^t averaged over a period (the
// 20-round one of the non-stationary patterns), p_n for the others. What FedAU's weight should
// approach (1 / rate) and what known_prob is given.
double LongRunProbability(const PatternSpec& pattern, double p);

// §1.6: m ~ Dirichlet(alpha · 1_C), the participation preference drawn once per seed and shared
// by all clients.
std::vector<double> ParticipationPreference(int num_classes, double alpha, uint64_t seed);
// §1.6: p_n = max(p_min, C · p_mean · <d_n, m>) for one client's label distribution d_n, clipped
// to at most 1.
float LabelCorrelatedProbability(absl::Span<const float> label_mix, absl::Span<const double> m,
                                 double p_mean, double p_min);

// Markov chain parameters of §1.6 for probability p: b = a(1/p − 1), and if b > 1, a ← a/b, b = 1.
struct MarkovRates {
  double activate = 0.0;    // a: inactive → active
  double deactivate = 0.0;  // b: active → inactive
};
MarkovRates MarkovRatesFor(double p, double a);

// Cyclic pattern of §1.6: A = max(1, round(L·p)) active rounds, B = max(1, L − A) inactive ones.
struct CycleShape {
  int active = 1;
  int inactive = 1;
};
CycleShape CycleShapeFor(double p, int length);

class ParticipationProcess {
 public:
  // `probabilities` are p_n in (0, 1] for clients 0..N−1. `trace` is required for kTrace (and
  // must outlive the process); its clients beyond N are ignored.
  static absl::StatusOr<std::unique_ptr<ParticipationProcess>> Create(
      const PatternSpec& pattern, std::vector<float> probabilities, uint64_t seed,
      const AvailabilityTrace* trace);

  // Moves every client in [first, last) to round `round`. Rounds must be advanced in increasing
  // order starting from 0 (each at most once, none skipped for the Markov chain and the cycle).
  // `round_start_s` is the round's virtual start time, used by traces in seconds.
  void Advance(int64_t round, double round_start_s, uint32_t first, uint32_t last);
  void Advance(int64_t round, double round_start_s = 0.0) {
    Advance(round, round_start_s, 0, num_clients());
  }
  // Whether client n takes part in the round last advanced to.
  bool Participates(uint32_t client) const { return (state_[client] & kActiveBit) != 0; }
  // Participants among [first, last), in increasing order.
  std::vector<uint32_t> Participants(uint32_t first, uint32_t last) const;

  uint32_t num_clients() const { return static_cast<uint32_t>(probability_.size()); }
  float probability(uint32_t client) const { return probability_[client]; }
  const PatternSpec& pattern() const { return pattern_; }
  // Bytes of per-client state (p_n and the pattern word).
  int64_t state_bytes() const;

 private:
  static constexpr uint32_t kActiveBit = 0x80000000u;
  static constexpr uint32_t kCounterMask = 0x7fffffffu;

  ParticipationProcess(const PatternSpec& pattern, std::vector<float> probabilities, uint64_t seed,
                       const AvailabilityTrace* trace);
  void Initialise();

  PatternSpec pattern_;
  std::vector<float> probability_;
  uint64_t seed_;
  const AvailabilityTrace* trace_;
  // Per client: bit 31 = participates this round (Bernoulli, trace) or active (Markov, cycle);
  // bits 0..30 = rounds left in the current phase (cycle only).
  std::vector<uint32_t> state_;
};

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_WORLD_PARTICIPATION_H_
