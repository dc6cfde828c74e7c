// fedcl_slowloris: how long an honest upload takes to land when every upload slot of a
// fedcl.v1.Federation server is held by a stalled client (issue 16, "Slowloris").
//
//   fedcl_slowloris --target=127.0.0.1:50051 --token_file=tokens.txt --stalled=4
//
// Clients first_client_id .. +stalled-1 each open a SubmitUpdate stream, send the header and the
// first half of their data chunks (--stall_chunks to choose), and then send nothing and keep the
// stream open. After --settle_ms (for the server to admit them), client first_client_id +
// stalled submits its whole update, without retries, with a deadline of --timeout_seconds; the
// time from its first byte to the server's answer is the figure. A server without idle deadlines
// never answers it (DEADLINE_EXCEEDED at the timeout); one with them answers after about its
// idle deadline. Prints one JSON object: the honest upload's status and seconds, and the status
// each stalled stream ended with.
//
// Robustness: every RPC has a deadline; stalled streams still open when the honest upload has
// its answer are cancelled. Exit code 0 if the honest upload was acknowledged, 1 if not, 2 for bad
// flags.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/base/command_line.h"
#include "tests/bench/load_client.h"

ABSL_FLAG(std::string, target, "", "Server address, e.g. 127.0.0.1:50051.");
ABSL_FLAG(std::string, token_file, "", "File of 'client_id token' lines.");
ABSL_FLAG(int, stalled, 4, "Stalled clients (the server's max_concurrent_uploads fills them all).");
ABSL_FLAG(uint64_t, first_client_id, 1, "First stalled client; the honest one follows them.");
ABSL_FLAG(int, stall_chunks, -1, "Data chunks a stalled client sends; -1 = half of them.");
ABSL_FLAG(int, settle_ms, 100, "Wait after opening the stalled streams, before the honest one.");
ABSL_FLAG(double, timeout_seconds, 120.0, "Deadline of the honest upload.");
ABSL_FLAG(std::string, layout, "download", "download or flat (see fedcl_submit_load).");

namespace fedcl::bench {
namespace {

absl::StatusOr<absl::flat_hash_map<uint64_t, std::string>> ReadTokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  absl::flat_hash_map<uint64_t, std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    uint64_t id = 0;
    if (fields.size() == 2 && absl::SimpleAtoi(fields[0], &id)) tokens[id] = fields[1];
  }
  return tokens;
}

int Run(int argc, char** argv) {
  if (!base::ParseCommandLine(argc, argv, "fedcl_slowloris",
                              "Time for an honest upload while stalled clients hold every slot.\n"
                              "  fedcl_slowloris --target=HOST:PORT --token_file=F --stalled=4",
                              "slowloris_benchmark")) {
    return 2;
  }
  LoadClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.flat_layout = absl::GetFlag(FLAGS_layout) == "flat";
  options.max_retries = 0;
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds));
  options.rpc_timeout = timeout + absl::Seconds(10);
  absl::StatusOr<absl::flat_hash_map<uint64_t, std::string>> tokens =
      ReadTokens(absl::GetFlag(FLAGS_token_file));
  const int stalled = absl::GetFlag(FLAGS_stalled);
  if (options.target.empty() || !tokens.ok() || stalled < 0) {
    std::fprintf(stderr, "fedcl_slowloris: --target, a readable --token_file, --stalled >= 0\n");
    return 2;
  }
  options.tokens = *std::move(tokens);
  CallStats stats;
  const uint64_t first = absl::GetFlag(FLAGS_first_client_id);
  std::vector<std::unique_ptr<LoadClient>> clients;
  for (int i = 0; i <= stalled; ++i) {
    clients.push_back(std::make_unique<LoadClient>(options, first + i, stats));
  }
  LoadClient& honest = *clients.back();
  std::atomic<bool> never{false};
  absl::StatusOr<v1::GetWorkResponse> work;
  for (auto& client : clients) {
    absl::StatusOr<v1::JoinResponse> joined = client->Join();
    if (joined.ok()) work = client->AwaitWork(-1, absl::Now() + absl::Seconds(60), never);
    if (!joined.ok() || !work.ok()) {
      std::fprintf(stderr, "fedcl_slowloris: client %d: %s\n", static_cast<int>(client->id()),
                   (joined.ok() ? work.status() : joined.status()).ToString().c_str());
      return 1;
    }
  }
  absl::StatusOr<Workload> workload = LearnWorkload(options, honest, *work, "", 1 << 20, 1);
  if (!workload.ok()) {
    std::fprintf(stderr, "fedcl_slowloris: %s\n", workload.status().ToString().c_str());
    return 1;
  }
  const int flag_chunks = absl::GetFlag(FLAGS_stall_chunks);
  const size_t chunks =
      flag_chunks >= 0 ? flag_chunks : static_cast<int>(workload->data_chunks.size() / 2);
  std::vector<std::unique_ptr<LoadClient::OpenUpload>> open;
  for (int i = 0; i < stalled; ++i) {
    open.push_back(clients[i]->StartStalledSubmit(*workload, work->round(), chunks));
  }
  absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_settle_ms)));
  LoadClientOptions honest_options = options;
  honest_options.rpc_timeout = timeout;
  LoadClient timed(honest_options, honest.id(), stats);
  absl::StatusOr<v1::GetWorkResponse> own = timed.AwaitWork(-1, absl::Now() + timeout, never);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::SubmitUpdateResponse> answer =
      own.ok() ? timed.Submit(*workload, own->round()) : own.status();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::string ends;
  for (auto& upload : open) {
    if (!answer.ok()) upload->Cancel();  // a server without deadlines never ends them
    const grpc::Status status = upload->Finish();
    absl::StrAppend(&ends, ends.empty() ? "" : ", ", "\"",
                    absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())),
                    "\"");
  }
  absl::PrintF(
      "{\"stalled\": %d, \"stall_chunks\": %d, \"values\": %d, \"honest_status\": \"%s\", "
      "\"honest_seconds\": %.3f, \"stalled_ended_with\": [%s]}\n",
      stalled, chunks, workload->values, absl::StatusCodeToString(answer.status().code()), seconds,
      ends);
  return answer.ok() ? 0 : 1;
}

}  // namespace
}  // namespace fedcl::bench

int main(int argc, char** argv) { return fedcl::bench::Run(argc, argv); }
