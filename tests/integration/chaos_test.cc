// Chaos (issue 16), labelled `long`: four devices (fedcl_chaos_device: the shipped DeviceSession
// over GrpcPort, state in a DeviceStateStore) federate through a real fedcl-server over TLS with
// tokens while the test kill -9s the server or a device at random moments (a seeded RNG picks the
// victim and the delay) and restarts it at once, at least 150 times (more on request, see
// ChaosSize). Then the devices are told to stop, each once it has nothing in flight, and the judge
// (chaos_check.h) compares what the devices recorded as acknowledged with what the server counted:
// no acknowledged update may be lost or counted twice, and the final module must equal an
// independent recomputation from the acknowledged updates. A device killed after the server
// acknowledged but before it recorded the answer resends its update after the restart and must be
// counted once (a duplicate ack).
//
// Rounds close by quota (3 of the 4 devices), never by a timer: the only wall-clock decisions are
// the kill moments. Every wait is bounded.
//
//   ctest --test-dir build -L long -R ChaosTest -V   (or run
//   build/bin/fedcl_chaos_test directly; either prints the summary line)
#include <sqlite3.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/update_journal.h"
#include "tests/integration/chaos_check.h"
#include "tests/integration/chaos_ledger.h"
#include "tests/integration/server_fixture.h"

namespace fedcl::testing {
namespace {

constexpr int kDevices = 4;
// A run's size and seed. Longer runs by hand: FEDCL_CHAOS_KILLS=1000 FEDCL_CHAOS_SEED=7
// build/bin/fedcl_chaos_test (the module grows with the kills so that no device runs out of
// coordinates; about 0.3 s a kill).
struct ChaosSize {
  int kills = 150;
  uint32_t seed = 20261207;
  // The module is the head of an MLP with `hidden` units and 16 classes, (hidden + 1) × 16
  // values: a quarter of them per device, one per learning step (a device learns about 6 steps
  // per kill at the pace below, so 512 hidden units serve 150 kills with room to spare).
  int hidden = 511;
  static constexpr int kClasses = 16;
  int64_t values() const { return int64_t{hidden + 1} * kClasses; }
  int64_t steps_per_device() const { return values() / kDevices; }
};

ChaosSize SizeFromEnvironment() {
  ChaosSize size;
  if (const char* kills = std::getenv("FEDCL_CHAOS_KILLS")) size.kills = std::atoi(kills);
  if (const char* seed = std::getenv("FEDCL_CHAOS_SEED"))
    size.seed = std::strtoul(seed, nullptr, 10);
  size.hidden = 512 * ((size.kills + 149) / 150) - 1;
  return size;
}

std::string ChaosConfig(const ServerFixture& f, const ChaosSize& size) {
  const std::string& d = f.dir();
  return absl::StrCat(
      "state_dir: \"", d, "/state\"\n", "backbone_checkpoint: \"", d, "/chaos_backbone.ckpt\"\n",
      "num_classes: ", ChaosSize::kClasses, "\n", "tokens_file: \"", d, "/tokens.txt\"\n",
      "tls { cert_file: \"", d, "/tls/server.pem\" key_file: \"", d, "/tls/server.key\" }\n",
      "module { name: \"head\" role: \"head\" }\n",
      "aggregator { kind: \"average_participating\" }\n",
      // A day: rounds close when 3 updates are in, whatever the kills cost in time.
      "round { duration_ms: 86400000 max_participants: 3 }\n",
      // Uploads of 32 KB in 4 KB chunks: a kill can land mid-stream.
      "limits { chunk_bytes: 4096 max_message_bytes: 65536 }\n",
      // Survives a process crash, which is what kill -9 is; a power cut is another test.
      "journal { sync: \"normal\" }\n");
}

class ChaosRun {
 public:
  ChaosRun(ServerFixture& f, const ChaosSize& size) : f_(f), size_(size) {}

  std::string DeviceDir(int c) const { return absl::StrCat(f_.dir(), "/device-", c); }
  std::string StopFile() const { return f_.dir() + "/stop"; }
  static uint64_t Client(int c) { return static_cast<uint64_t>(c + 1); }
  int64_t FirstIndex(int c) const { return c * size_.steps_per_device(); }

  void StartDevice(int c) {
    auto device = ChildProcess::Start(
        {BinaryPath("fedcl_chaos_device"), "--server=" + f_.address(),
         "--tls_ca=" + f_.dir() + "/tls/ca.pem", "--tls_server_name=localhost",
         absl::StrCat("--client_id=", Client(c)), "--token_file=" + f_.TokenFile(Client(c)),
         "--storage_dir=" + DeviceDir(c), "--stop_file=" + StopFile(),
         absl::StrCat("--first_index=", FirstIndex(c)),
         absl::StrCat("--max_steps=", size_.steps_per_device()), "--think_ms=20",
         absl::StrCat("--max_seconds=", 900 + size_.kills)},
        DeviceDir(c) + ".log");
    ASSERT_TRUE(device.ok()) << device.status();
    devices_[c] = *std::move(device);
  }

  // A device that exited on its own (it should only ever be killed) fails the test.
  void ExpectDevicesRunning() {
    for (int c = 0; c < kDevices; ++c) {
      absl::StatusOr<int> code = devices_[c]->Wait(absl::ZeroDuration());
      EXPECT_FALSE(code.ok()) << "device " << c << " exited with " << *code << "; see "
                              << DeviceDir(c) << ".log";
    }
  }

  std::unique_ptr<ChildProcess> devices_[kDevices];
  ServerFixture& f_;
  const ChaosSize size_;
};

std::vector<float> Download(ServerFixture& f, int64_t version) {
  auto values = f.DownloadModule(1, "head", version);
  EXPECT_TRUE(values.ok()) << values.status();
  return values.ok() ? *values : std::vector<float>{};
}

// Closed rounds and their participants, from the server's round log.
std::map<int64_t, int64_t> ClosedRounds(const std::string& db_path) {
  std::map<int64_t, int64_t> closed;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db_path;
    sqlite3_close(db);
    return closed;
  }
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT round, participants FROM rounds WHERE closed_ms IS NOT NULL", -1,
                     &st, nullptr);
  while (st != nullptr && sqlite3_step(st) == SQLITE_ROW)
    closed[sqlite3_column_int64(st, 0)] = sqlite3_column_int64(st, 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return closed;
}

// What the server recorded: its status and final module while it runs, then (stopped) its round
// log and the open round's journal.
ServerRecord ReadServer(ServerFixture& f, std::vector<float> initial) {
  ServerRecord server;
  server.initial = std::move(initial);
  fedcl::v1::GetStatusResponse status;
  EXPECT_TRUE(f.Status(&status).ok());
  server.open_round = status.round();
  for (const auto& c : status.clients()) server.participations[c.client_id()] = c.participations();
  for (const auto& m : status.modules())
    if (m.name() == "head") server.final_values = Download(f, m.version());
  absl::StatusOr<int> stopped = f.StopServer(SIGTERM);
  EXPECT_TRUE(stopped.ok() && *stopped == 0) << "fedcl-server did not stop cleanly";
  server.closed = ClosedRounds(f.dir() + "/state/state.db");
  auto journal = server::UpdateJournal::Read(f.dir() + "/state/journal.log");
  EXPECT_TRUE(journal.ok()) << journal.status();
  if (journal.ok()) {
    for (const fl::JournalEntry& e : journal->entries) {
      if (e.round != server.open_round) continue;  // a closed round's leftovers
      ++server.open_round_entries[e.client];
      auto& values = server.open_round_values[e.client];
      for (size_t i = 0; i < e.values.size(); ++i)
        if (e.values[i] != 0.0f) values[static_cast<int64_t>(i)] = e.values[i];
    }
  }
  return server;
}

TEST(ChaosTest, RandomKillNinesOfServerAndDevicesLoseAndDoubleCountNothing) {
  const absl::Time start = absl::Now();
  const ChaosSize size = SizeFromEnvironment();
  const absl::Time give_up = start + absl::Minutes(10) + absl::Seconds(size.kills);
  ServerFixture f;
  SaveMlpBackbone(f.dir() + "/chaos_backbone.ckpt", size.hidden, ChaosSize::kClasses);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  f.WriteRawConfig(ChaosConfig(f, size));
  f.StartServer();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  const std::string address = f.address();
  ASSERT_TRUE(f.Join(1).ok());
  const std::vector<float> initial = Download(f, 0);
  ASSERT_EQ(initial.size(), static_cast<size_t>(size.values()));

  ChaosRun run(f, size);
  for (int c = 0; c < kDevices; ++c) {
    ::mkdir(run.DeviceDir(c).c_str(), 0755);
    run.StartDevice(c);
  }
  std::mt19937 rng(size.seed);
  int server_kills = 0, device_kills = 0;
  while (server_kills + device_kills < size.kills && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(20, 400)(rng)));
    run.ExpectDevicesRunning();
    if (::testing::Test::HasFailure()) break;
    if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) {
      f.KillServer();
      ++server_kills;
      absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(0, 200)(rng)));
      f.StartServer(address);  // the port the devices know
      ASSERT_FALSE(::testing::Test::HasFatalFailure());
    } else {
      const int c = std::uniform_int_distribution<int>(0, kDevices - 1)(rng);
      run.devices_[c].reset();  // SIGKILL and reap
      ++device_kills;
      run.StartDevice(c);
    }
  }
  ASSERT_GE(server_kills + device_kills, size.kills) << "out of time";

  // The end: every device stops once nothing of its is in flight.
  std::ofstream(run.StopFile()) << "stop\n";
  for (int c = 0; c < kDevices; ++c) {
    absl::StatusOr<int> code = run.devices_[c]->Wait(absl::Seconds(60));
    EXPECT_TRUE(code.ok()) << "device " << c << " did not stop: " << code.status();
    if (code.ok()) EXPECT_EQ(*code, 0) << "device " << c << "; see " << run.DeviceDir(c) << ".log";
    run.devices_[c].reset();  // killed if it did not stop: its ledger is judged all the same
  }
  ServerRecord server = ReadServer(f, initial);
  std::map<uint64_t, LedgerContents> ledgers;
  std::map<uint64_t, int64_t> first_index;
  for (int c = 0; c < kDevices; ++c) {
    absl::StatusOr<LedgerContents> ledger = ReadLedger(run.DeviceDir(c) + "/ledger.log");
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    EXPECT_TRUE(ledger->done) << "device " << c << " did not finish cleanly";
    ledgers[ChaosRun::Client(c)] = *std::move(ledger);
    first_index[ChaosRun::Client(c)] = run.FirstIndex(c);
  }
  const ChaosVerdict verdict = Judge(ledgers, first_index, server);
  const std::string summary = absl::StrCat(
      "chaos: seed ", size.seed, ", kills ", server_kills + device_kills, " (server ", server_kills,
      ", devices ", device_kills, "), rounds closed ", server.closed.size(), ", acknowledged ",
      verdict.acknowledged, " (", verdict.duplicate_acks, " acknowledged again after a lost reply)",
      ", lost ", verdict.lost, ", double-counted ", verdict.double_counted,
      ", values off the recomputation ", verdict.mismatched_values, ", steps learned ",
      verdict.steps_learned, " of which acknowledged ", verdict.steps_acknowledged, ", ",
      absl::ToInt64Seconds(absl::Now() - start), " s");
  std::printf("%s\n", summary.c_str());
  ::testing::Test::RecordProperty("summary", summary);
  for (const std::string& problem : verdict.problems) ADD_FAILURE() << problem;
  EXPECT_EQ(verdict.lost, 0);
  EXPECT_EQ(verdict.double_counted, 0);
  EXPECT_EQ(verdict.mismatched_values, 0);
  EXPECT_GT(server.closed.size(), 10u) << "the federation hardly moved";
  EXPECT_GT(verdict.acknowledged, 0);
}

}  // namespace
}  // namespace fedcl::testing
