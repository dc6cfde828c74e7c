#include "sim/world/participation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/base/random.h"

namespace fedcl::sim {
namespace {

// Stream tags: one per purpose, so no two kinds of draw ever share a stream.
constexpr uint64_t kPreferenceStream = 0x5041525450524546;  // the shared vector m
constexpr uint64_t kInitialStateStream = 0x50415254494e4954;
constexpr uint64_t kRoundDrawStream = 0x5041525444524157;

double RoundDraw(uint64_t seed, uint32_t client, int64_t round) {
  return base::Rng::ForStream(seed, {kRoundDrawStream, client, static_cast<uint64_t>(round)})
      .Uniform();
}

}  // namespace

absl::StatusOr<PatternSpec> ParsePattern(absl::string_view text) {
  PatternSpec spec;
  spec.name = std::string(text);
  if (text == "bernoulli") return spec;
  if (text == "trace") {
    spec.kind = PatternKind::kTrace;
    return spec;
  }
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "markov-")) {
    spec.kind = PatternKind::kMarkov;
    if (!absl::SimpleAtod(rest, &spec.markov_a) || !(spec.markov_a > 0 && spec.markov_a <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pattern '", text, "': the transition probability must be in (0, 1]"));
    }
    return spec;
  }
  if (text == "sine-cutoff") {
    spec.kind = PatternKind::kSineCutoff;
    return spec;
  }
  if (text == "square") {
    spec.kind = PatternKind::kSquare;
    return spec;
  }
  if (absl::ConsumePrefix(&rest, "sine-")) {
    spec.kind = PatternKind::kSine;
    if (!absl::SimpleAtod(rest, &spec.sine_amplitude) ||
        !(spec.sine_amplitude > 0 && spec.sine_amplitude <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pattern '", text, "': the sine's amplitude must be in (0, 1]"));
    }
    return spec;
  }
  if (absl::ConsumePrefix(&rest, "cyclic-")) {
    spec.kind = PatternKind::kCyclic;
    if (!absl::SimpleAtoi(rest, &spec.cyclic_length) || spec.cyclic_length < 2 ||
        spec.cyclic_length > 1000000) {
      return absl::InvalidArgumentError(
          absl::StrCat("pattern '", text, "': the cycle length must be an integer in [2, 10^6]"));
    }
    return spec;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown participation pattern '", text,
      "' (expected bernoulli, markov-<a> such as markov-0.05, cyclic-<L> such as cyclic-100, "
      "trace, sine-<a> such as sine-0.3, sine-cutoff or square)"));
}

double RoundProbability(const PatternSpec& pattern, double p, int64_t round) {
  constexpr double kPi = 3.14159265358979323846;
  const double phase = std::sin(2.0 * kPi * static_cast<double>(round) / 20.0);
  double p_t = p;
  switch (pattern.kind) {
    case PatternKind::kSine:
      p_t = (pattern.sine_amplitude * phase + 1.0 - pattern.sine_amplitude) * p;
      break;
    case PatternKind::kSineCutoff:
      p_t = (0.3 * phase + 0.7) * p;
      if (p_t < 0.1) p_t = 0.0;
      break;
    case PatternKind::kSquare:
      if ((round / 10) % 2 == 1) p_t = 0.4 * p;
      break;
    case PatternKind::kBernoulli:
    case PatternKind::kMarkov:
    case PatternKind::kCyclic:
    case PatternKind::kTrace:
      break;
  }
  return std::clamp(p_t, 0.0, 1.0);
}

double LongRunProbability(const PatternSpec& pattern, double p) {
  const bool drifts = pattern.kind == PatternKind::kSine ||
                      pattern.kind == PatternKind::kSineCutoff ||
                      pattern.kind == PatternKind::kSquare;
  if (!drifts) return p;
  double sum = 0.0;
  for (int64_t t = 0; t < 20; ++t) sum += RoundProbability(pattern, p, t);
  return sum / 20.0;
}

std::vector<double> ParticipationPreference(int num_classes, double alpha, uint64_t seed) {
  base::Rng rng = base::Rng::ForStream(seed, {kPreferenceStream});
  return rng.Dirichlet(alpha, num_classes);
}

float LabelCorrelatedProbability(absl::Span<const float> label_mix, absl::Span<const double> m,
                                 double p_mean, double p_min) {
  double dot = 0.0;
  for (size_t c = 0; c < m.size(); ++c) dot += label_mix[c] * m[c];
  const double p = static_cast<double>(m.size()) * p_mean * dot;
  return static_cast<float>(std::min(1.0, std::max(p_min, p)));
}

MarkovRates MarkovRatesFor(double p, double a) {
  MarkovRates rates{a, a * (1.0 / p - 1.0)};
  if (rates.deactivate > 1.0) {
    rates.activate /= rates.deactivate;
    rates.deactivate = 1.0;
  }
  return rates;
}

CycleShape CycleShapeFor(double p, int length) {
  CycleShape shape;
  // std::nearbyint rounds half to even, as numpy's round does.
  shape.active = std::max(1, static_cast<int>(std::nearbyint(length * p)));
  shape.inactive = std::max(1, length - shape.active);
  return shape;
}

absl::StatusOr<std::unique_ptr<ParticipationProcess>> ParticipationProcess::Create(
    const PatternSpec& pattern, std::vector<float> probabilities, uint64_t seed,
    const AvailabilityTrace* trace) {
  if (probabilities.empty()) return absl::InvalidArgumentError("no clients");
  if (probabilities.size() > (size_t{1} << 31)) {
    return absl::InvalidArgumentError("at most 2^31 clients");
  }
  for (size_t n = 0; n < probabilities.size(); ++n) {
    if (!(probabilities[n] > 0.0f && probabilities[n] <= 1.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("client ", n, ": participation probability ",
                                                     probabilities[n], " is not in (0, 1]"));
    }
  }
  if (pattern.kind == PatternKind::kTrace && trace == nullptr) {
    return absl::InvalidArgumentError("pattern 'trace' needs an availability trace");
  }
  auto process = std::unique_ptr<ParticipationProcess>(
      new ParticipationProcess(pattern, std::move(probabilities), seed, trace));
  process->Initialise();
  return process;
}

ParticipationProcess::ParticipationProcess(const PatternSpec& pattern,
                                           std::vector<float> probabilities, uint64_t seed,
                                           const AvailabilityTrace* trace)
    : pattern_(pattern),
      probability_(std::move(probabilities)),
      seed_(seed),
      trace_(trace),
      state_(probability_.size(), 0) {}

void ParticipationProcess::Initialise() {
  for (uint32_t n = 0; n < num_clients(); ++n) {
    base::Rng rng = base::Rng::ForStream(seed_, {kInitialStateStream, n});
    switch (pattern_.kind) {
      case PatternKind::kMarkov:
        // Start in the stationary distribution: active with probability p_n.
        state_[n] = rng.Bernoulli(probability_[n]) ? kActiveBit : 0;
        break;
      case PatternKind::kCyclic: {
        const CycleShape shape = CycleShapeFor(probability_[n], pattern_.cyclic_length);
        // Inactive, with a random phase: r ~ uniform{0..B−1}.
        state_[n] = static_cast<uint32_t>(rng.UniformInt(static_cast<uint64_t>(shape.inactive)));
        break;
      }
      case PatternKind::kBernoulli:
      case PatternKind::kTrace:
      case PatternKind::kSine:
      case PatternKind::kSineCutoff:
      case PatternKind::kSquare:
        break;
    }
  }
}

void ParticipationProcess::Advance(int64_t round, double round_start_s, uint32_t first,
                                   uint32_t last) {
  last = std::min(last, num_clients());
  for (uint32_t n = first; n < last; ++n) {
    uint32_t& s = state_[n];
    switch (pattern_.kind) {
      case PatternKind::kBernoulli:
        s = RoundDraw(seed_, n, round) < probability_[n] ? kActiveBit : 0;
        break;
      case PatternKind::kMarkov: {
        // First the transition, then participate iff active (§1.6).
        const MarkovRates rates = MarkovRatesFor(probability_[n], pattern_.markov_a);
        const double u = RoundDraw(seed_, n, round);
        const bool active = (s & kActiveBit) != 0;
        s = (active ? u >= rates.deactivate : u < rates.activate) ? kActiveBit : 0;
        break;
      }
      case PatternKind::kCyclic: {
        bool active = (s & kActiveBit) != 0;
        uint32_t left = s & kCounterMask;
        if (left == 0) {
          const CycleShape shape = CycleShapeFor(probability_[n], pattern_.cyclic_length);
          active = !active;
          left = static_cast<uint32_t>(active ? shape.active : shape.inactive);
        }
        --left;
        s = (active ? kActiveBit : 0) | left;
        break;
      }
      case PatternKind::kSine:
      case PatternKind::kSineCutoff:
      case PatternKind::kSquare:
        s = RoundDraw(seed_, n, round) < RoundProbability(pattern_, probability_[n], round)
                ? kActiveBit
                : 0;
        break;
      case PatternKind::kTrace: {
        const double time =
            trace_->unit() == TraceUnit::kRounds ? static_cast<double>(round) : round_start_s;
        s = trace_->WindowAt(n, time) != nullptr ? kActiveBit : 0;
        break;
      }
    }
  }
}

std::vector<uint32_t> ParticipationProcess::Participants(uint32_t first, uint32_t last) const {
  std::vector<uint32_t> participants;
  last = std::min(last, num_clients());
  for (uint32_t n = first; n < last; ++n) {
    if (Participates(n)) participants.push_back(n);
  }
  return participants;
}

int64_t ParticipationProcess::state_bytes() const {
  return static_cast<int64_t>(probability_.capacity() * sizeof(float) +
                              state_.capacity() * sizeof(uint32_t));
}

}  // namespace fedcl::sim
