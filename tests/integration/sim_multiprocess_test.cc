// The simulator's multi-process mode against its in-process mode: two fedcl-sim workers, each
// hosting half of the virtual clients, train against a real fedcl-server (TLS, worker tokens)
// whose rounds close when both shards have reported. The final test accuracy must equal the
// in-process run's, up to the server metrics line's 4-decimal rounding: the participation draws,
// minibatches and fixed-point fold do not depend on how clients are sharded, nor on a worker being
// killed and restarted mid-run, nor on compressed deltas travelling over gRPC, nor on FedAWE's
// clients training from earlier module versions the server serves.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "gtest/gtest.h"
#include "sim/run/engine.h"
#include "sim/world/scenario.h"
#include "tests/integration/child_process.h"

namespace fedcl::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int Shell(const std::string& command) { return std::system(command.c_str()); }

// Runs `scenario_file` (in tests/sim/data) in process and with two workers and fedcl-server,
// killing and restarting one worker mid-run if asked, and compares the server's accuracies.
void ExpectWorkersReproduceTheInProcessRun(const std::string& scenario_file,
                                           bool restart_a_worker) {
  char pattern[] = "/tmp/fedcl-sim-mp-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  const std::string scenario_path =
      absl::StrCat(FEDCL_SOURCE_DIR, "/tests/sim/data/", scenario_file);

  // In process.
  absl::StatusOr<sim::Scenario> scenario =
      sim::LoadScenario(base::FileSystem::Default(), scenario_path);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  absl::StatusOr<sim::SimulationInputs> inputs =
      sim::LoadInputs(base::FileSystem::Default(), *scenario);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  absl::StatusOr<sim::RunResult> local =
      sim::Engine(*scenario, *inputs)
          .Run(scenario->methods[0], scenario->patterns[0], scenario->config.seed(0), nullptr);
  ASSERT_TRUE(local.ok()) << local.status();

  // Across processes: TLS from the development CA, one worker token per shard.
  ASSERT_EQ(Shell(absl::StrCat(FEDCL_SOURCE_DIR, "/deploy/dev_ca.sh ", dir, "/tls > /dev/null")),
            0);
  ASSERT_EQ(Shell(absl::StrCat(FEDCL_SOURCE_DIR, "/deploy/make_tokens.sh ", dir,
                               "/tokens worker 0-9", " > /dev/null && ", FEDCL_SOURCE_DIR,
                               "/deploy/make_tokens.sh ", dir, "/tokens worker 10-19 > /dev/null")),
            0);
  auto emit = ChildProcess::Start(
      {BinaryPath("fedcl-sim"), "--scenario=" + scenario_path, "--emit_server_config=" + dir,
       "--shards=2", "--state_dir=" + dir + "/state", "--tokens_file=" + dir + "/tokens/tokens.txt",
       "--tls_cert=" + dir + "/tls/server.pem", "--tls_key=" + dir + "/tls/server.key"});
  ASSERT_TRUE(emit.ok()) << emit.status();
  ASSERT_EQ(*(*emit)->Wait(absl::Seconds(60)), 0);

  auto server = ChildProcess::Start(
      {BinaryPath("fedcl-server"), "--config=" + dir + "/server.textproto", "--listen=127.0.0.1:0"},
      dir + "/server.log");
  ASSERT_TRUE(server.ok()) << server.status();
  auto line = (*server)->WaitForLine("listening on", absl::Seconds(30));
  ASSERT_TRUE(line.ok()) << line.status() << "\n" << ReadAll(dir + "/server.log");
  const std::string address = line->substr(line->rfind(' ') + 1);

  std::vector<std::unique_ptr<ChildProcess>> workers;
  for (int shard = 0; shard < 2; ++shard) {
    const std::string token =
        absl::StrCat(dir, "/tokens/worker-", shard == 0 ? "0-9" : "10-19", ".token");
    auto worker =
        ChildProcess::Start({BinaryPath("fedcl-sim"), "--scenario=" + scenario_path, "--worker",
                             absl::StrCat("--shard=", shard), "--shards=2", "--server=" + address,
                             "--tls_ca=" + dir + "/tls/ca.pem", "--tls_server_name=localhost",
                             "--token_file=" + token, "--progress=false"},
                            absl::StrCat(dir, "/worker", shard, ".log"));
    ASSERT_TRUE(worker.ok()) << worker.status();
    workers.push_back(*std::move(worker));
  }
  // Kill shard 0 (SIGKILL, possibly mid-round with some updates sent) once a few rounds have
  // closed, and start it again, as Kubernetes restarts a failed pod of the Indexed Job: the run
  // must end exactly as the uninterrupted in-process one.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (restart_a_worker) {
    const std::string closed = ReadAll(dir + "/state/metrics.jsonl");
    if (std::count(closed.begin(), closed.end(), '\n') >= 5) break;
    ASSERT_LT(absl::Now(), deadline) << "no five rounds closed";
    absl::SleepFor(absl::Milliseconds(2));
  }
  if (restart_a_worker) {
    workers[0]->Signal(SIGKILL);
    ASSERT_TRUE(workers[0]->Wait(absl::Seconds(10)).ok());
    auto restarted = ChildProcess::Start(
        {BinaryPath("fedcl-sim"), "--scenario=" + scenario_path, "--worker", "--shard=0",
         "--shards=2", "--server=" + address, "--tls_ca=" + dir + "/tls/ca.pem",
         "--tls_server_name=localhost", "--token_file=" + dir + "/tokens/worker-0-9.token",
         "--progress=false"},
        dir + "/worker0-restarted.log");
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    workers[0] = *std::move(restarted);
  }
  for (int shard = 0; shard < 2; ++shard) {
    absl::StatusOr<int> code = workers[shard]->Wait(absl::Seconds(180));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << ReadAll(absl::StrCat(dir, "/worker", shard, ".log"));
  }
  (*server)->Signal(SIGTERM);
  EXPECT_EQ(*(*server)->Wait(absl::Seconds(20)), 0);

  // The server's metrics: one line per round, accuracy every eval_every rounds.
  std::vector<double> accuracies;
  std::vector<int64_t> participants;
  std::istringstream lines(ReadAll(dir + "/state/metrics.jsonl"));
  for (std::string l; std::getline(lines, l);) {
    const size_t p = l.find("\"participants\":");
    participants.push_back(std::atoll(l.c_str() + p + 15));
    const size_t a = l.find("\"accuracy\":");
    if (a != std::string::npos && l.compare(a + 11, 4, "null") != 0)
      accuracies.push_back(std::atof(l.c_str() + a + 11));
  }
  ASSERT_EQ(participants.size(), 30u) << ReadAll(dir + "/server.log");
  ASSERT_EQ(accuracies.size(), local->evals.size());
  for (size_t i = 0; i < accuracies.size(); ++i) {
    EXPECT_NEAR(accuracies[i], local->evals[i].accuracy, 0.5e-4 + 1e-9) << "evaluation " << i;
    std::printf("round %lld: in-process accuracy %.6f, two workers + fedcl-server %.4f\n",
                static_cast<long long>(local->evals[i].round), local->evals[i].accuracy,
                accuracies[i]);
  }
  int64_t total = 0;
  for (int64_t p : participants) total += p;
  EXPECT_EQ(total, local->updates);
  Shell("rm -rf " + dir);
}

TEST(SimMultiProcessTest, TwoWorkerShardsReproduceTheInProcessRunThroughAWorkerRestart) {
  ExpectWorkersReproduceTheInProcessRun("multiprocess.textproto", /*restart_a_worker=*/true);
}

// Compressed uploads: fedcl-server asks the workers' virtual devices for top-k over gRPC and
// decodes what they send to exactly the deltas the in-process run folds. Without a restart: a
// virtual client's residual lives in its worker's memory (a real device keeps it in its state
// file), so a restarted worker's clients start theirs again from zero.
TEST(SimMultiProcessTest, TwoWorkerShardsReproduceACompressedInProcessRun) {
  ExpectWorkersReproduceTheInProcessRun("multiprocess_topk.textproto", /*restart_a_worker=*/false);
}

// FedAWE: every client trains from its own base, an earlier module version that fedcl-server
// lists, serves over gRPC and checks in the update; the bases are the server's, so a worker
// killed and restarted mid-run changes nothing.
TEST(SimMultiProcessTest, TwoWorkerShardsReproduceAFedAweInProcessRunThroughAWorkerRestart) {
  ExpectWorkersReproduceTheInProcessRun("multiprocess_fedawe.textproto", /*restart_a_worker=*/true);
}

}  // namespace
}  // namespace fedcl::testing
