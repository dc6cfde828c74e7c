#include "sim/modes/progress.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"

namespace fedcl::sim {

std::string ClockText(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  return s >= 3600 ? absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                   : absl::StrFormat("%d:%02d", s / 60, s % 60);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

absl::StatusOr<PatternSpec> SelectPattern(const Scenario& scenario, const std::string& name) {
  if (name.empty()) return scenario.patterns[0];
  if (const PatternSpec* pattern = FindPattern(scenario, name)) return *pattern;
  return absl::InvalidArgumentError(absl::StrCat("pattern '", name, "' is not in the scenario"));
}

absl::StatusOr<std::string> ReadToken(const base::FileSystem& fs, const std::string& path) {
  if (path.empty()) return std::string();
  FEDCL_ASSIGN_OR_RETURN(std::string token, fs.ReadFile(path, 4096));
  return std::string(absl::StripAsciiWhitespace(token));
}

Progress::Progress(bool enabled, int64_t total_rounds)
    : enabled_(enabled), interactive_(isatty(STDERR_FILENO) != 0), total_(total_rounds) {}

void Progress::OnRound(int64_t round, int64_t participants) {
  ++done_;
  round_ = round;
  participants_ = participants;
  Print(false);
}

void Progress::EndRun() {
  Print(true);
  if (enabled_ && interactive_) std::fputc('\n', stderr);
}

void Progress::Print(bool force) {
  if (!enabled_) return;
  const double elapsed = SecondsSince(start_);
  if (!force && SecondsSince(last_print_) < (interactive_ ? 0.2 : 10.0)) return;
  last_print_ = std::chrono::steady_clock::now();
  const double eta = done_ > 0 ? elapsed * static_cast<double>(total_ - done_) / done_ : 0.0;
  std::string line =
      absl::StrFormat("%s | round %d | elapsed %s | ETA %s | accuracy %s | participants %d", label_,
                      round_, ClockText(elapsed), ClockText(eta),
                      accuracy_ < 0 ? "-" : absl::StrFormat("%.4f", accuracy_), participants_);
  if (interactive_) {
    std::fprintf(stderr, "\r%-120s", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace fedcl::sim
