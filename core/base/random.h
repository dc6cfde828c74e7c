// Deterministic random numbers.
//
// Every random draw in fedcl comes from an `Rng` built from an explicit seed; nothing reads a
// global generator or the time. `Rng::ForStream(seed, {client, round})` gives an independent
// stream per key, so a draw for client 7 in round 12 is the same however clients are scheduled,
// sharded across processes or threaded:
//
//   base::Rng rng = base::Rng::ForStream(run_seed, {client_id, round});
//   bool participates = rng.Bernoulli(p);
//
// The generator is xoshiro256** seeded through SplitMix64; distributions are implemented here
// (not with <random>'s distributions, whose output differs between standard libraries), so a seed
// reproduces a run on any platform.
//
// Not thread-safe: give each thread or task its own Rng (that is what streams are for).
#ifndef FEDCL_CORE_BASE_RANDOM_H_
#define FEDCL_CORE_BASE_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace fedcl::base {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // An independent stream identified by `seed` and a key of any length (e.g. {client, round}).
  static Rng ForStream(uint64_t seed, std::initializer_list<uint64_t> key);

  uint64_t NextU64();

  // Uniform in [0, 1), 53 random bits.
  double Uniform();
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [0, n); n must be > 0. Unbiased.
  uint64_t UniformInt(uint64_t n);
  // Standard normal.
  double Normal();
  double Normal(double mean, double stddev) { return mean + stddev * Normal(); }
  bool Bernoulli(double p) { return Uniform() < p; }
  // Gamma(shape, 1); shape must be > 0.
  double Gamma(double shape);
  // One draw from Dirichlet(alpha · 1_k). Entries sum to 1 (uniform if every gamma draw
  // underflowed to zero, which happens for tiny alpha).
  std::vector<double> Dirichlet(double alpha, int k);

  // Fisher-Yates shuffle.
  template <typename T>
  void Shuffle(std::vector<T>& items) {
    for (std::size_t i = items.size(); i > 1; --i) {
      std::size_t j = static_cast<std::size_t>(UniformInt(i));
      std::swap(items[i - 1], items[j]);
    }
  }

 private:
  uint64_t state_[4];
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

// A well-mixed 64-bit hash step (SplitMix64's finaliser); useful for deriving seeds.
uint64_t MixBits(uint64_t x);

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_RANDOM_H_
