// fedcl-server as a real process on 127.0.0.1, over TLS with tokens.
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/time/clock.h"
#include "core/base/filesystem.h"
#include "gtest/gtest.h"
#include "proto/grpc_port.h"
#include "tests/integration/server_fixture.h"

namespace fedcl::testing {
namespace {

using fedcl::v1::GetStatusResponse;
using fedcl::v1::SubmitUpdateResponse;

// Every kind of bad input gets its own status and changes nothing; a normal round afterwards
// produces exactly the expected module.
TEST(ServerProcessTest, BadInputTableGetsSpecificStatusesAndANormalRoundStillCompletes) {
  ServerFixture f;
  f.WriteConfig(
      "round { duration_ms: 600000 max_participants: 3 }\n"
      "limits { max_norm: 5 max_message_bytes: 65536 chunk_bytes: 16384 }\n");
  f.StartServer();
  for (int client : {0, 1, 2, 3}) ASSERT_TRUE(f.Join(client).ok());
  auto initial = f.DownloadModule(0, "head", 0);
  ASSERT_TRUE(initial.ok()) << initial.status();

  struct Case {
    std::string name;
    ServerFixture::Update update;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, grpc::StatusCode code, auto change) {
    ServerFixture::Update u = ServerFixture::MakeUpdate(0, 0, 0.1f);
    change(u);
    cases.push_back({std::move(name), u, code});
  };
  add("unknown client (valid token, never joined)", grpc::StatusCode::NOT_FOUND,
      [](auto& u) { u.client = 9; });
  add("bad token", grpc::StatusCode::UNAUTHENTICATED, [](auto& u) { u.token = "nope"; });
  add("another client's token", grpc::StatusCode::PERMISSION_DENIED,
      [&](auto& u) { u.token = f.token(1); });
  add("future round", grpc::StatusCode::OUT_OF_RANGE, [](auto& u) { u.round = 5; });
  add("stale round", grpc::StatusCode::ABORTED, [](auto& u) { u.round = -1; });
  add("wrong module name", grpc::StatusCode::INVALID_ARGUMENT, [](auto& u) { u.module = "ssf"; });
  add("wrong module version", grpc::StatusCode::FAILED_PRECONDITION,
      [](auto& u) { u.base_version = 7; });
  add("shape mismatch", grpc::StatusCode::INVALID_ARGUMENT, [](auto& u) {
    u.weight_shape = {10, 4};
  });
  add("dtype mismatch", grpc::StatusCode::INVALID_ARGUMENT, [](auto& u) { u.dtype = 0; });
  add("NaN", grpc::StatusCode::INVALID_ARGUMENT, [](auto& u) { u.values[3] = std::nanf(""); });
  add("Inf", grpc::StatusCode::INVALID_ARGUMENT, [](auto& u) { u.values[40] = -INFINITY; });
  add("norm above the bound", grpc::StatusCode::INVALID_ARGUMENT,
      [](auto& u) { std::fill(u.values.begin(), u.values.end(), 3.0f); });
  add("oversized message", grpc::StatusCode::RESOURCE_EXHAUSTED,
      [](auto& u) { u.oversized_chunk = 120000; });  // one message over the 64 kB limit
  add("more data declared than the pool holds", grpc::StatusCode::RESOURCE_EXHAUSTED, [](auto& u) {
    u.weight_shape = {4, 100000};
  });
  add("header size disagrees with the layout", grpc::StatusCode::INVALID_ARGUMENT,
      [](auto& u) { u.declared_bytes = 12; });
  add("corrupted data (CRC)", grpc::StatusCode::DATA_LOSS, [](auto& u) { u.corrupt_crc = true; });
  add("stream cut off mid-update", grpc::StatusCode::CANCELLED,
      [](auto& u) { u.cancel_midway = true; });
  for (const Case& c : cases) {
    grpc::Status status = f.Submit(c.update);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
  }
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.accepted_this_round(), 0) << "no bad update may count";
  EXPECT_EQ(status.round(), 0);

  // A normal round: three updates (one sent twice), the quota of 3 closes the round.
  SubmitUpdateResponse response;
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(0, 0, 0.1f), &response).ok());
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(0, 0, 0.1f), &response).ok());
  EXPECT_TRUE(response.duplicate());
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(1, 0, 0.2f)).ok());
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(2, 0, 0.3f)).ok());
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.round(), 1);
  auto after = f.DownloadModule(0, "head", 1);
  ASSERT_TRUE(after.ok()) << after.status();
  // FedAU, first participations (ω = 1), N = 4 enrolled: x + (0.1 + 0.2 + 0.3) / 4.
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_NEAR((*after)[i], (*initial)[i] + 0.15f, 1e-6) << "value " << i;
  }
}

// kill -9 mid-round: the round resumes with exactly the acknowledged updates and its deadline,
// and ends bit-identical to a server that never died.
TEST(ServerProcessTest, KillNineMidRoundLosesNoAcknowledgedUpdate) {
  auto run = [](bool crash) {
    ServerFixture f;
    f.WriteConfig("round { duration_ms: 600000 max_participants: 4 }\n");
    f.StartServer();
    for (int client : {0, 1, 2, 3}) EXPECT_TRUE(f.Join(client).ok());
    for (int client : {0, 1, 2}) {
      EXPECT_TRUE(f.Submit(ServerFixture::MakeUpdate(client, 0, 0.05f * (client + 1))).ok());
    }
    GetStatusResponse before;
    EXPECT_TRUE(f.Status(&before).ok());
    if (crash) {
      f.KillServer();
      f.StartServer();
      GetStatusResponse after;
      EXPECT_TRUE(f.Status(&after).ok());
      EXPECT_EQ(after.round(), 0);
      EXPECT_EQ(after.accepted_this_round(), 3) << "acknowledged updates survive kill -9";
      EXPECT_EQ(after.deadline_unix_ms(), before.deadline_unix_ms()) << "original deadline";
      SubmitUpdateResponse duplicate;
      EXPECT_TRUE(f.Submit(ServerFixture::MakeUpdate(1, 0, 0.1f), &duplicate).ok());
      EXPECT_TRUE(duplicate.duplicate()) << "a retry after the restart counts once";
    }
    EXPECT_TRUE(f.Submit(ServerFixture::MakeUpdate(3, 0, -0.4f)).ok());  // closes the round
    auto values = f.DownloadModule(0, "head", 1);
    EXPECT_TRUE(values.ok()) << values.status();
    return values.ok() ? *values : std::vector<float>{};
  };
  const std::vector<float> crashed = run(true);
  const std::vector<float> uninterrupted = run(false);
  ASSERT_FALSE(crashed.empty());
  EXPECT_EQ(crashed, uninterrupted);
}

// kill -9, then a torn record at the journal's end (as a crash mid-write leaves it): the restart
// keeps exactly the acknowledged updates, cuts the torn bytes off, and the round ends as if the
// crash had not happened.
TEST(ServerProcessTest, ATornJournalTailIsIgnoredAtRestart) {
  ServerFixture f;
  f.WriteConfig("round { duration_ms: 600000 max_participants: 4 }\n");
  f.StartServer();
  for (int client : {0, 1, 2, 3}) ASSERT_TRUE(f.Join(client).ok());
  auto initial = f.DownloadModule(0, "head", 0);
  ASSERT_TRUE(initial.ok()) << initial.status();
  for (int client : {0, 1, 2}) {
    ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(client, 0, 0.05f * (client + 1))).ok());
  }
  f.KillServer();
  const std::string journal = f.dir() + "/state/journal.log";
  const auto acknowledged = std::filesystem::file_size(journal);
  ASSERT_GT(acknowledged, 0u);
  {
    // The first half of a copy of the first record: its header promises more than follows.
    std::ifstream in(journal, std::ios::binary);
    std::string bytes(acknowledged / 3 / 2, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(journal, std::ios::binary | std::ios::app) << bytes;
  }
  ASSERT_GT(std::filesystem::file_size(journal), acknowledged);
  f.StartServer();
  EXPECT_EQ(std::filesystem::file_size(journal), acknowledged) << "the torn tail is cut off";
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.round(), 0);
  EXPECT_EQ(status.accepted_this_round(), 3);
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(3, 0, -0.4f)).ok());  // closes the round
  auto values = f.DownloadModule(0, "head", 1);
  ASSERT_TRUE(values.ok()) << values.status();
  // FedAU, first participations (ω = 1), N = 4: x + (0.05 + 0.1 + 0.15 - 0.4) / 4.
  for (size_t i = 0; i < values->size(); ++i) {
    EXPECT_NEAR((*values)[i], (*initial)[i] - 0.025f, 1e-6) << "value " << i;
  }
}

TEST(ServerProcessTest, ARoundWhoseDeadlinePassedWhileDownClosesAtRestart) {
  ServerFixture f;
  f.WriteConfig("round { duration_ms: 1500 }\n");
  f.StartServer();
  ASSERT_TRUE(f.Join(0).ok());
  ASSERT_TRUE(f.Join(1).ok());
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(0, 0, 0.4f)).ok());
  auto initial = f.DownloadModule(0, "head", 0);
  ASSERT_TRUE(initial.ok());
  f.KillServer();
  absl::SleepFor(absl::Milliseconds(2000));
  f.StartServer();
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_GE(status.round(), 1);
  auto values = f.DownloadModule(0, "head", 1);
  ASSERT_TRUE(values.ok()) << values.status();
  for (size_t i = 0; i < values->size(); ++i) EXPECT_NEAR((*values)[i], (*initial)[i] + 0.2f, 1e-6);
}

// A device whose channel lost the server keeps calling (failing fast) every few milliseconds, as
// DeviceSession hosts do; once the server is back on its port, the port must find it again. With
// gRPC's minimum connect timeout cut to the reconnect backoff (a few hundred milliseconds), every
// connection attempt made between calls expired before anything polled it, and the device never
// reconnected.
TEST(ServerProcessTest, APortWhoseCallsFailFastFindsARestartedServer) {
  ServerFixture f;
  f.WriteConfig("");
  f.StartServer();
  const std::string address = f.address();
  proto::GrpcPortOptions options;
  options.target = address;
  options.tls_ca_file = f.dir() + "/tls/ca.pem";
  options.tls_server_name = "localhost";
  options.token = f.token(1);
  options.call_timeout = absl::Seconds(5);
  options.reconnect_backoff_initial = absl::Milliseconds(20);
  options.reconnect_backoff_max = absl::Milliseconds(200);
  auto port = proto::GrpcPort::Create(options, base::FileSystem::Default());
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_TRUE((*port)->Join(1, "test").ok());
  f.KillServer();
  for (int i = 0; i < 3; ++i) {  // failed calls: the channel backs off
    EXPECT_FALSE((*port)->GetWork(1, {}).ok());
    absl::SleepFor(absl::Milliseconds(50));
  }
  f.StartServer(address);
  const absl::Time restarted = absl::Now();
  absl::Status status = absl::UnknownError("not called");
  const absl::Time give_up = absl::Now() + absl::Seconds(15);
  while (!status.ok() && absl::Now() < give_up) {
    status = (*port)->GetWork(1, {}).status();
    if (!status.ok()) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(status.ok()) << "15 s after the restart: " << status;
  EXPECT_LT(absl::Now() - restarted, absl::Seconds(3)) << "the restarted server was found late";
}

TEST(ServerProcessTest, HealthAnswersWithoutATokenAndStatusNeedsOne) {
  ServerFixture f;
  f.WriteConfig("");
  f.StartServer();
  absl::StatusOr<int> health = f.HealthCheck();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 1) << "SERVING";
  grpc::ClientContext context;
  GetStatusResponse status;
  EXPECT_EQ(f.stub().GetStatus(&context, fedcl::v1::GetStatusRequest(), &status).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST(ServerProcessTest, SigtermStopsTheServerCleanly) {
  ServerFixture f;
  f.WriteConfig("");
  f.StartServer();
  ASSERT_TRUE(f.Join(0).ok());
  absl::StatusOr<int> code = f.StopServer(SIGTERM);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

}  // namespace
}  // namespace fedcl::testing
