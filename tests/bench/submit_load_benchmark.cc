// fedcl_submit_load: K concurrent clients submitting D-value updates to a fedcl.v1.Federation
// server, round after round; prints updates/s, submit latency and errors as one JSON object.
//
//   fedcl_submit_load --target=127.0.0.1:50051 --clients=32 --rounds=5 --token_file=tokens.txt
//
// Each client (load_client.h) is a thread with its own connection (or one of --connections
// shared ones, as a simulator worker would use): Join once, then per round
// GetWork (polling through ACTION_WAIT at the suggested delay), wait at a barrier until all K
// clients hold work for the round, and submit one SubmitUpdate stream: an UpdateHeader, then the
// delta bytes in chunks of at most ServerInfo.chunk_bytes. The server is expected to close the
// round once the K updates are in (fedcl-server: round.max_participants = K).
//
// Before the clients start, the first client id joins, asks for work and learns the delta
// layout of every module offered (--layout=download: one DownloadModule each) or assumes one
// float32 tensor "w" per module (--layout=flat). Every client sends the same small finite
// values, generated once from --seed.
//
// Measured, after --warmup_rounds: submit latency, from the start of the SubmitUpdate call to
// its response, retries included; `seconds`, the sum over rounds of the time from the barrier
// release to the round's last response (the submit phase, all K clients submitting at once),
// which gives `updates_per_second`; `wall_seconds`, from the first measured release to the last
// response, which adds the round turnover (closing, GetWork polling) and gives
// `end_to_end_updates_per_second`. Errors are counted by status code over the whole run,
// retried ones included. `cpu_seconds` is this process's CPU time: on a shared machine it is
// what the load generator took from the server. With --server_pid, `server_measured_cpu_seconds` is
// the server's CPU time (user + system, /proc/PID/stat) from the first measured barrier release
// until every client has finished (after the last measured response: the round it closed
// included), and `server_cpu_ms_per_update` divides it by the measured updates: the steady-state
// cost of an accepted update, round turnover included, start-up and warm-up excluded.
//
// Robustness: every RPC has a deadline (--rpc_timeout_ms), retries are bounded, every wait for
// work or for the other clients is bounded by --round_timeout_ms, and --timeout_seconds ends the
// whole run, set-up included. Exit code 0 when every round completed, 1 if the run failed (the
// JSON says why), 2 for bad flags, 3 when the overall timeout fired (the JSON then holds what was
// measured so far).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/command_line.h"
#include "tests/bench/load_client.h"
#include "tests/bench/round_barrier.h"

ABSL_FLAG(std::string, target, "", "Server address, e.g. 127.0.0.1:50051.");
ABSL_FLAG(int, clients, 8, "K: concurrent clients, with ids first_client_id .. +K-1.");
ABSL_FLAG(uint64_t, first_client_id, 1, "Id of the first client.");
ABSL_FLAG(int, connections, 0,
          "TCP connections the clients share, round-robin; 0 = one per client (as devices).");
ABSL_FLAG(int64_t, values, 0,
          "D: expected float32 values per update (over the modules submitted); 0 = whatever "
          "GetWork offers. A mismatch is an error.");
ABSL_FLAG(int, rounds, 5, "Measured rounds (after the warm-up); 0 = until --seconds.");
ABSL_FLAG(int, warmup_rounds, 1, "Rounds run first and not measured.");
ABSL_FLAG(double, seconds, 0.0,
          "Start no measured round after this many seconds of measuring (0 = no limit).");
ABSL_FLAG(std::string, token, "", "Bearer token of every client (e.g. a worker token).");
ABSL_FLAG(std::string, token_file, "",
          "File of 'client_id token' lines; overrides --token for the ids it lists.");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificates: connect with TLS (else plaintext).");
ABSL_FLAG(std::string, tls_server_name, "",
          "With --tls_ca: the name the server's certificate must carry.");
ABSL_FLAG(std::string, module, "", "Submit a delta for this module only (default: every module).");
ABSL_FLAG(std::string, layout, "download",
          "download (learn each module's tensors with DownloadModule) or flat (one tensor 'w').");
ABSL_FLAG(int64_t, chunk_bytes, 0, "Data chunk size; 0 = ServerInfo.chunk_bytes from Join.");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20, "Largest message the clients send or receive.");
ABSL_FLAG(int, rpc_timeout_ms, 60000, "Deadline of every RPC.");
ABSL_FLAG(int, round_timeout_ms, 120000, "Longest wait for work or for the other clients.");
ABSL_FLAG(int, max_retries, 5, "Retries of a call failing with UNAVAILABLE or alike.");
ABSL_FLAG(int, max_retry_after_ms, 1000, "Cap on the ACTION_WAIT delay the server suggests.");
ABSL_FLAG(double, timeout_seconds, 600.0, "The whole run ends after this long.");
ABSL_FLAG(uint64_t, seed, 1, "Seeds the delta values.");
ABSL_FLAG(int, server_pid, 0,
          "The server's process id, on this machine: report its CPU time over the measured "
          "rounds (from /proc), per accepted update. 0 = not measured.");

namespace fedcl::bench {
namespace {

namespace pb = ::fedcl::v1;

constexpr int kExitFailure = 1;
constexpr int kExitBadFlags = 2;
constexpr int kExitTimeout = 3;

struct LoadOptions {
  LoadClientOptions client;
  int clients = 8;
  uint64_t first_client_id = 1;
  int connections = 0;  // 0 = one per client
  int64_t values = 0;   // 0 = any
  int rounds = 5;       // 0 = until measure_for
  int warmup_rounds = 1;
  absl::Duration measure_for = absl::ZeroDuration();  // zero = no limit
  std::string module;                                 // empty = every module
  int64_t chunk_bytes = 0;                            // 0 = the server's
  absl::Duration round_timeout = absl::Seconds(120);
  uint64_t seed = 1;
  int server_pid = 0;  // 0 = the server's CPU is not measured
};

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

// User + system CPU seconds of process `pid` so far (/proc/PID/stat fields 14 and 15); -1 if
// unreadable.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return -1.0;
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(text).substr(paren + 2), ' ', absl::SkipEmpty());
  int64_t user = 0, system = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &user) ||
      !absl::SimpleAtoi(fields[12], &system)) {
    return -1.0;
  }
  return static_cast<double>(user + system) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The measurements of the run. Thread-safe.
class Results {
 public:
  CallStats& stats() { return stats_; }

  // Records why the run failed; the first reason wins.
  void Fail(absl::string_view why) {
    absl::MutexLock lock(&mu_);
    if (failure_.empty()) failure_ = std::string(why);
  }
  bool failed() const {
    absl::MutexLock lock(&mu_);
    return !failure_.empty();
  }
  // Acknowledged submissions in the measured rounds.
  int64_t measured_updates() const {
    absl::MutexLock lock(&mu_);
    int64_t updates = 0;
    for (const RoundSample& round : rounds_) updates += round.updates;
    return updates;
  }

  // One acknowledged submission in measured round `index`.
  void AddSubmit(int index, int64_t server_round, absl::Time released, absl::Duration latency,
                 absl::Time done, bool duplicate) {
    absl::MutexLock lock(&mu_);
    if (index >= static_cast<int>(rounds_.size())) rounds_.resize(index + 1);
    RoundSample& round = rounds_[index];
    round.server_round = server_round;
    round.released = released;
    round.last_response = std::max(round.last_response, done);
    ++round.updates;
    latencies_ms_.push_back(absl::ToDoubleMilliseconds(latency));
    duplicates_ += duplicate ? 1 : 0;
  }

  // The report as the members of a JSON object (no braces).
  std::string JsonMembers(bool timed_out) const;

 private:
  struct RoundSample {
    int64_t server_round = -1;
    absl::Time released;
    absl::Time last_response = absl::InfinitePast();
    int64_t updates = 0;
  };

  CallStats stats_;
  mutable absl::Mutex mu_;
  std::vector<RoundSample> rounds_ ABSL_GUARDED_BY(mu_);
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  int64_t duplicates_ ABSL_GUARDED_BY(mu_) = 0;
  std::string failure_ ABSL_GUARDED_BY(mu_);
};

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  size_t rank = static_cast<size_t>(std::ceil(q * sorted.size()));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

std::string Results::JsonMembers(bool timed_out) const {
  absl::MutexLock lock(&mu_);
  int64_t updates = 0, first_round = -1, last_round = -1;
  absl::Duration submit_phase;
  absl::Time first = absl::InfiniteFuture(), last = absl::InfinitePast();
  for (const RoundSample& round : rounds_) {
    if (round.updates == 0) continue;
    updates += round.updates;
    submit_phase += round.last_response - round.released;
    first = std::min(first, round.released);
    last = std::max(last, round.last_response);
    if (first_round < 0) first_round = round.server_round;
    last_round = round.server_round;
  }
  double seconds = absl::ToDoubleSeconds(submit_phase);
  double wall = updates > 0 ? absl::ToDoubleSeconds(last - first) : 0.0;
  std::vector<double> sorted = latencies_ms_;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0.0;
  for (double v : sorted) mean += v / sorted.size();
  std::string errors;
  for (const auto& [code, count] : stats_.errors()) {
    absl::StrAppend(&errors, errors.empty() ? "" : ", ", JsonString(code), ": ", count);
  }
  std::string failure = timed_out ? "overall timeout" : failure_;
  return absl::StrFormat(
      "\"ok\": %s, \"error\": %s, \"measured_rounds\": %d, \"first_round\": %d, "
      "\"last_round\": %d, \"updates\": %d, \"seconds\": %.6f, \"updates_per_second\": %.3f, "
      "\"wall_seconds\": %.6f, \"end_to_end_updates_per_second\": %.3f, \"latency_ms\": "
      "{\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"max\": %.3f, \"mean\": %.3f}, "
      "\"errors\": {%s}, \"retries\": %d, \"waits\": %d, \"duplicates\": %d",
      failure.empty() ? "true" : "false", JsonString(failure), rounds_.size(), first_round,
      last_round, updates, seconds, seconds > 0 ? updates / seconds : 0.0, wall,
      wall > 0 ? updates / wall : 0.0, Percentile(sorted, 0.5), Percentile(sorted, 0.9),
      Percentile(sorted, 0.99), sorted.empty() ? 0.0 : sorted.back(), mean, errors,
      stats_.retries(), stats_.waits(), duplicates_);
}

// The K client threads, from set-up to report.
class LoadRun {
 public:
  explicit LoadRun(const LoadOptions& options)
      : options_(options),
        total_rounds_(options.rounds > 0 ? options.warmup_rounds + options.rounds : -1),
        barrier_(options.clients, [this] { return StopNow(); }) {}

  // Joins as the first client, asks for work, learns the layout and builds the data.
  absl::Status Setup();
  // Starts the K client threads; they finish on their own or once Fail() is called.
  void Start();
  // Waits for every client thread to finish.
  void Join();
  // Records why the run failed (the first reason wins) and stops every client.
  void Fail(const absl::Status& status) {
    results_.Fail(status.ToString());
    abort_ = true;
    barrier_.Abort();
  }
  bool failed() const { return results_.failed(); }
  // The JSON report.
  std::string Report(bool timed_out) const;

 private:
  void RunClient(int index);
  bool StopNow();

  const LoadOptions options_;
  const int total_rounds_;  // -1: until measure_for
  Results results_;
  Workload workload_;  // written by Setup, before the client threads start; read-only after
  RoundBarrier barrier_;
  std::atomic<bool> abort_{false};
  std::vector<std::shared_ptr<grpc::Channel>> channels_;  // shared ones, if --connections
  std::vector<std::thread> threads_;
  mutable absl::Mutex mu_;
  // The workload's part of the report (the watchdog may report while Setup runs).
  std::string workload_json_ ABSL_GUARDED_BY(mu_) =
      "\"values\": 0, \"bytes_per_update\": 0, \"chunk_bytes\": 0, \"modules\": []";
  int releases_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time measure_start_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The server's CPU seconds at the first measured release and at the final one (-1: not read).
  double server_cpu_start_ ABSL_GUARDED_BY(mu_) = -1.0;
  double server_cpu_end_ ABSL_GUARDED_BY(mu_) = -1.0;
};

// Called by the last thread at each barrier, before it releases the others.
bool LoadRun::StopNow() {
  absl::MutexLock lock(&mu_);
  int index = releases_++;
  bool stop;
  if (total_rounds_ >= 0) {
    stop = index >= total_rounds_;
  } else {
    if (index == options_.warmup_rounds) measure_start_ = absl::Now();
    stop = index > options_.warmup_rounds && absl::Now() - measure_start_ >= options_.measure_for;
  }
  if (options_.server_pid > 0 && index == options_.warmup_rounds) {
    server_cpu_start_ = ProcessCpuSeconds(options_.server_pid);
  }
  return stop;
}

absl::Status LoadRun::Setup() {
  LoadClient client(options_.client, options_.first_client_id, results_.stats());
  absl::StatusOr<pb::JoinResponse> joined = client.Join();
  if (!joined.ok()) return joined.status();
  int64_t chunk_bytes =
      options_.chunk_bytes > 0 ? options_.chunk_bytes : joined->server().chunk_bytes();
  if (chunk_bytes <= 0) chunk_bytes = 1 << 20;
  std::atomic<bool> never{false};
  absl::StatusOr<pb::GetWorkResponse> work =
      client.AwaitWork(-1, absl::Now() + options_.round_timeout, never);
  if (!work.ok()) return work.status();
  absl::StatusOr<Workload> workload =
      LearnWorkload(options_.client, client, *work, options_.module, chunk_bytes, options_.seed);
  if (!workload.ok()) return workload.status();
  if (options_.values > 0 && options_.values != workload->values) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--values=", options_.values, " but the server's modules hold ", workload->values));
  }
  workload_ = *std::move(workload);
  std::string modules;
  for (const ModuleLayout& m : workload_.modules) {
    absl::StrAppend(&modules, modules.empty() ? "" : ", ", "{\"name\": ", JsonString(m.name),
                    ", \"values\": ", m.num_values, ", \"tensors\": ", m.layout.tensors_size(),
                    "}");
  }
  absl::MutexLock lock(&mu_);
  workload_json_ = absl::StrFormat(
      "\"values\": %d, \"bytes_per_update\": %d, \"chunk_bytes\": %d, \"modules\": [%s]",
      workload_.values, workload_.values * static_cast<int64_t>(sizeof(float)),
      workload_.chunk_bytes, modules);
  return absl::OkStatus();
}

void LoadRun::Start() {
  for (int i = 0; i < options_.connections; ++i) channels_.push_back(MakeChannel(options_.client));
  for (int i = 0; i < options_.clients; ++i) threads_.emplace_back([this, i] { RunClient(i); });
}

void LoadRun::RunClient(int index) {
  std::shared_ptr<grpc::Channel> channel =
      channels_.empty() ? nullptr : channels_[index % channels_.size()];
  LoadClient client(options_.client, options_.first_client_id + index, results_.stats(),
                    std::move(channel));
  if (absl::StatusOr<pb::JoinResponse> joined = client.Join(); !joined.ok()) {
    Fail(joined.status());
  }
  int64_t last_round = -1;
  for (int r = 0; !abort_ && (total_rounds_ < 0 || r < total_rounds_); ++r) {
    absl::Time deadline = absl::Now() + options_.round_timeout;
    absl::StatusOr<pb::GetWorkResponse> work = client.AwaitWork(last_round, deadline, abort_);
    if (!work.ok()) {
      if (!abort_) Fail(work.status());
      break;
    }
    std::optional<RoundBarrier::Release> release = barrier_.Wait(deadline);
    if (!release.has_value()) {
      if (!abort_) Fail(absl::DeadlineExceededError("the clients did not meet at the barrier"));
      break;
    }
    if (release->stop) break;
    absl::Time start = absl::Now();
    absl::StatusOr<pb::SubmitUpdateResponse> response = client.Submit(workload_, work->round());
    absl::Time done = absl::Now();
    if (!response.ok()) {
      // Aborted: the round closed (at its deadline) before this update counted; go on.
      if (absl::IsAborted(response.status())) continue;
      Fail(response.status());
      break;
    }
    last_round = work->round();
    if (r >= options_.warmup_rounds) {
      results_.AddSubmit(r - options_.warmup_rounds, work->round(), release->at, done - start, done,
                         response->duplicate());
    }
  }
}

void LoadRun::Join() {
  for (std::thread& thread : threads_) thread.join();
  absl::MutexLock lock(&mu_);
  if (options_.server_pid > 0) server_cpu_end_ = ProcessCpuSeconds(options_.server_pid);
}

std::string LoadRun::Report(bool timed_out) const {
  absl::MutexLock lock(&mu_);
  std::string server_cpu;
  if (server_cpu_start_ >= 0 && server_cpu_end_ >= 0) {
    const double seconds = server_cpu_end_ - server_cpu_start_;
    const int64_t updates = results_.measured_updates();
    absl::StrAppendFormat(
        &server_cpu, ", \"server_measured_cpu_seconds\": %.3f, \"server_cpu_ms_per_update\": %.4f",
        seconds, updates > 0 ? 1000 * seconds / updates : 0.0);
  }
  return absl::StrFormat(
      "{%s, \"target\": %s, \"clients\": %d, %s, \"warmup_rounds\": %d, \"cpu_seconds\": "
      "%.3f%s}",
      results_.JsonMembers(timed_out), JsonString(options_.client.target), options_.clients,
      workload_json_, options_.warmup_rounds, CpuSeconds(), server_cpu);
}

// ---- Flags ------------------------------------------------------------------------------------

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// "client_id token" per line; blank lines and lines starting with '#' are skipped.
absl::StatusOr<absl::flat_hash_map<uint64_t, std::string>> ReadTokens(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::flat_hash_map<uint64_t, std::string> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    uint64_t id = 0;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": expected 'client_id token'"));
    }
    tokens[id] = std::string(fields[1]);
  }
  return tokens;
}

absl::StatusOr<LoadClientOptions> ClientOptionsFromFlags() {
  LoadClientOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.token = absl::GetFlag(FLAGS_token);
  o.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.rpc_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_rpc_timeout_ms));
  o.max_retries = absl::GetFlag(FLAGS_max_retries);
  o.max_retry_after = absl::Milliseconds(absl::GetFlag(FLAGS_max_retry_after_ms));
  std::string layout = absl::GetFlag(FLAGS_layout);
  if (o.target.empty()) return absl::InvalidArgumentError("--target is required");
  if (layout != "download" && layout != "flat") {
    return absl::InvalidArgumentError("--layout must be download or flat");
  }
  o.flat_layout = layout == "flat";
  if (o.max_message_bytes <= 0 || o.max_message_bytes > INT32_MAX || o.max_retries < 0) {
    return absl::InvalidArgumentError(
        "--max_message_bytes must be in [1, 2^31); --max_retries >= 0");
  }
  if (std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    absl::StatusOr<absl::flat_hash_map<uint64_t, std::string>> tokens = ReadTokens(path);
    if (!tokens.ok()) return tokens.status();
    o.tokens = *std::move(tokens);
  }
  if (std::string path = absl::GetFlag(FLAGS_tls_ca); !path.empty()) {
    absl::StatusOr<std::string> pem = ReadFile(path);
    if (!pem.ok()) return pem.status();
    o.tls_ca_pem = *std::move(pem);
  }
  return o;
}

absl::StatusOr<LoadOptions> OptionsFromFlags() {
  LoadOptions o;
  absl::StatusOr<LoadClientOptions> client = ClientOptionsFromFlags();
  if (!client.ok()) return client.status();
  o.client = *std::move(client);
  o.clients = absl::GetFlag(FLAGS_clients);
  o.first_client_id = absl::GetFlag(FLAGS_first_client_id);
  o.connections = absl::GetFlag(FLAGS_connections);
  o.values = absl::GetFlag(FLAGS_values);
  o.rounds = absl::GetFlag(FLAGS_rounds);
  o.warmup_rounds = absl::GetFlag(FLAGS_warmup_rounds);
  o.measure_for = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  o.module = absl::GetFlag(FLAGS_module);
  o.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  o.round_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_round_timeout_ms));
  o.seed = absl::GetFlag(FLAGS_seed);
  o.server_pid = absl::GetFlag(FLAGS_server_pid);
  if (o.clients < 1 || o.connections < 0 || o.warmup_rounds < 0 || o.rounds < 0) {
    return absl::InvalidArgumentError(
        "--clients must be >= 1; --connections and the round counts >= 0");
  }
  if (o.rounds == 0 && o.measure_for <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--rounds=0 needs --seconds > 0");
  }
  if (o.chunk_bytes < 0 || o.chunk_bytes > o.client.max_message_bytes / 2) {
    return absl::InvalidArgumentError("--chunk_bytes must be at most --max_message_bytes / 2");
  }
  return o;
}

int Run(int argc, char** argv) {
  if (!base::ParseCommandLine(
          argc, argv, "fedcl_submit_load",
          "K concurrent clients submitting D-value updates to a fedcl.v1.Federation server.\n"
          "  fedcl_submit_load --target=127.0.0.1:50051 --clients=32 --rounds=5 --token=T",
          "submit_load_benchmark")) {
    return kExitBadFlags;
  }
  absl::StatusOr<LoadOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "fedcl_submit_load: %s\n",
                 std::string(options.status().message()).c_str());
    return kExitBadFlags;
  }
  // Client threads may still be blocked when the overall timeout fires, so the run is never
  // destroyed: the watchdog reports what was measured and ends the process with _Exit.
  auto* run = new LoadRun(*options);
  std::atomic<bool> reported{false};
  auto report_once = [&](bool timed_out) {
    if (reported.exchange(true)) return false;
    std::printf("%s\n", run->Report(timed_out).c_str());
    std::fflush(stdout);
    return true;
  };
  absl::Notification done;
  std::thread watchdog([&] {
    if (done.WaitForNotificationWithTimeout(absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds)))) {
      return;
    }
    run->Fail(absl::DeadlineExceededError("overall timeout"));
    if (report_once(true)) std::_Exit(kExitTimeout);
  });
  int exit_code = 0;
  if (absl::Status status = run->Setup(); !status.ok()) {
    std::fprintf(stderr, "fedcl_submit_load: setup: %s\n", status.ToString().c_str());
    run->Fail(status);
    exit_code = kExitFailure;
  } else {
    run->Start();
    run->Join();
    exit_code = run->failed() ? kExitFailure : 0;
  }
  done.Notify();
  watchdog.join();
  // Lost the race to the watchdog: it is about to end the process.
  if (!report_once(false)) absl::SleepFor(absl::InfiniteDuration());
  return exit_code;
}

}  // namespace
}  // namespace fedcl::bench

int main(int argc, char** argv) { return fedcl::bench::Run(argc, argv); }
