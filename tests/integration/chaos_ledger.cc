#include "tests/integration/chaos_ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace fedcl::testing {
namespace {

std::string Hex(double value) { return absl::StrFormat("%a", value); }

bool ParseHex(absl::string_view text, double* value) {
  const std::string s(text);
  char* end = nullptr;
  *value = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// The fields of one complete line into `out`; false if it does not parse.
bool ParseLine(absl::string_view line, LedgerContents& out) {
  const std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (f.empty()) return false;
  if (f[0] == "start" && f.size() == 1) {
    ++out.starts;
    out.done = false;
    return true;
  }
  if (f[0] == "done" && f.size() == 1) {
    out.done = true;
    return true;
  }
  out.done = false;
  double value = 0.0;
  if (f[0] == "learn" && f.size() == 5) {
    LedgerStep s;
    if (!absl::SimpleAtoi(f[1], &s.step) || !absl::SimpleAtoi(f[2], &s.round) ||
        !absl::SimpleAtoi(f[3], &s.index) || !ParseHex(f[4], &value)) {
      return false;
    }
    s.value = static_cast<float>(value);
    out.steps.push_back(s);
    return true;
  }
  if (f[0] == "send" && f.size() >= 4) {
    LedgerSend s;
    size_t n = 0;
    if (!absl::SimpleAtoi(f[1], &s.round) || !absl::SimpleAtoi(f[2], &s.samples) ||
        !absl::SimpleAtoi(f[3], &n) || f.size() != 4 + n) {
      return false;
    }
    for (size_t i = 4; i < f.size(); ++i) {
      const std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(f[i], ':');
      int64_t index = 0;
      if (!absl::SimpleAtoi(kv.first, &index) || !ParseHex(kv.second, &value)) return false;
      s.nonzero[index] = static_cast<float>(value);
    }
    out.sends.push_back(std::move(s));
    return true;
  }
  LedgerAnswer a;
  if (f[0] == "ack" && f.size() == 4) {
    int duplicate = 0;
    if (!absl::SimpleAtoi(f[1], &a.round) || !absl::SimpleAtoi(f[2], &duplicate) ||
        !ParseHex(f[3], &a.weight)) {
      return false;
    }
    a.duplicate = duplicate != 0;
    out.answers.push_back(a);
    return true;
  }
  if ((f[0] == "refused" || f[0] == "error") && f.size() == 3) {
    a.kind = f[0] == "refused" ? LedgerAnswer::Kind::kRefused : LedgerAnswer::Kind::kError;
    if (!absl::SimpleAtoi(f[1], &a.round) || !absl::SimpleAtoi(f[2], &a.code)) return false;
    out.answers.push_back(a);
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<LedgerWriter> LedgerWriter::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  LedgerWriter writer(fd);
  // A line torn by a kill mid-write is cut off, so that the next event starts a line of its own.
  // The event it was recording had no effect yet (see the header).
  std::string text;
  char buffer[65536];
  for (ssize_t n; (n = ::pread(fd, buffer, sizeof(buffer), text.size())) > 0;)
    text.append(buffer, n);
  const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (keep != text.size() && ::ftruncate(fd, static_cast<off_t>(keep)) != 0) {
    return absl::InternalError(absl::StrCat("truncate ", path, ": ", std::strerror(errno)));
  }
  return writer;
}

LedgerWriter::~LedgerWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status LedgerWriter::Append(const std::string& line) {
  const std::string text = line + "\n";
  // One write per event: a kill lands before it, after it, or (rarely, for long lines) inside it,
  // which leaves a torn last line that the reader ignores and the next Open cuts off.
  const ssize_t n = ::write(fd_, text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size())) {
    return absl::InternalError(absl::StrCat("ledger write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status LedgerWriter::Learn(const LedgerStep& s) {
  return Append(absl::StrCat("learn ", s.step, " ", s.round, " ", s.index, " ", Hex(s.value)));
}

absl::Status LedgerWriter::Send(const LedgerSend& s) {
  std::string line = absl::StrCat("send ", s.round, " ", s.samples, " ", s.nonzero.size());
  for (const auto& [index, value] : s.nonzero) absl::StrAppend(&line, " ", index, ":", Hex(value));
  return Append(line);
}

absl::Status LedgerWriter::Answer(const LedgerAnswer& a) {
  switch (a.kind) {
    case LedgerAnswer::Kind::kAck:
      return Append(absl::StrCat("ack ", a.round, " ", a.duplicate ? 1 : 0, " ", Hex(a.weight)));
    case LedgerAnswer::Kind::kRefused:
      return Append(absl::StrCat("refused ", a.round, " ", a.code));
    case LedgerAnswer::Kind::kError:
      return Append(absl::StrCat("error ", a.round, " ", a.code));
  }
  return absl::OkStatus();
}

absl::StatusOr<LedgerContents> ReadLedger(const std::string& path) {
  LedgerContents out;
  std::ifstream in(path, std::ios::binary);
  if (!in) return out;
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  size_t begin = 0, line_number = 1;
  for (size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
    if (!ParseLine(absl::string_view(text).substr(begin, end - begin), out)) {
      return absl::DataLossError(absl::StrCat(path, ":", line_number, ": not a ledger event"));
    }
    ++line_number;
  }
  return out;  // text after the last newline: a line torn by a kill, ignored
}

}  // namespace fedcl::testing
