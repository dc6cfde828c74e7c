// DeviceLoops and the FederationClient against a real fedcl-server (FederationServer) on
// 127.0.0.1:0, with tokens, chunked transfers, SQLite state and short rounds. Assertions are on
// counts that do not depend on timing: every loop runs until it has a fixed number of
// acknowledged updates.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/device_loop.h"
#include "client/federation_client.h"
#include "core/base/log.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "server/federation_server.h"
#include "server/server_config.h"
#include "tests/client/client_test_util.h"

namespace fedcl::client {
namespace {

std::string TokenOf(fl::ClientId id) { return absl::StrCat("test-token-of-client-", id, "-f00d"); }

class DeviceLoopServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/fedcl_client_test_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    std::unique_ptr<nn::Model> model = testing::TinyMlp(1);
    ASSERT_TRUE(proto::SaveCheckpoint(fs_, Path("backbone.ckpt"), *model, {}, {}).ok());
    std::tie(images_, labels_) = testing::WriteSyntheticIdx(fs_, Path("data"), 240, 1);
    std::string tokens;
    for (fl::ClientId id : {1, 2, 3}) {
      absl::StrAppend(&tokens, "client ", id, " sha256:", proto::Sha256Hex(TokenOf(id)), "\n");
    }
    ASSERT_TRUE(fs_.WriteFileAtomically(Path("tokens"), tokens).ok());
  }

  void TearDown() override {
    StopServer();
    if (HasFailure()) {
      for (const auto& entry : log_.entries()) std::fprintf(stderr, "%s\n", entry.message.c_str());
    }
    std::filesystem::remove_all(dir_);
  }

  std::string Path(absl::string_view name) const { return base::JoinPath(dir_, name); }

  // Starts the server on `address` (port 0 picks one).
  void StartServer(const std::string& address = "127.0.0.1:0") {
    const std::string text = absl::StrFormat(
        R"pb(
          state_dir: "%s"
          backbone_checkpoint: "%s"
          module { name: "head" role: "head" }
          module {
            name: "ssf"
            role: "pet"
            pet { kind: "ssf" }
          }
          recipe { local_steps: 3 batch_size: 8 learning_rate: 0.1 }
          round { duration_ms: 400 min_participants: 1 max_participants: 3 }
          limits { max_message_bytes: 65536 chunk_bytes: 1024 }
          tokens_file: "%s"
          journal { sync: "normal" }
          seed: 1
        )pb",
        Path("server"), Path("backbone.ckpt"), Path("tokens"));
    absl::StatusOr<v1::ServerConfig> config = server::ParseServerConfig(text, "test config");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<server::FederationServer>> started =
        server::FederationServer::Start(*config, address, fs_, base::Clock::Real(),
                                        base::LogSink::Null());
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }

  // FederationServer's destructor waits for gRPC to stop, which only Wait() asks for.
  void StopServer() {
    if (server_ == nullptr) return;
    server_->Shutdown();
    EXPECT_TRUE(server_->Wait().ok());
    server_.reset();
  }

  DeviceLoopOptions Options(fl::ClientId id) const {
    DeviceLoopOptions options;
    options.server.target = server_->address();
    options.server.token = TokenOf(id);
    options.server.call_timeout = absl::Seconds(5);
    options.server.reconnect_backoff_initial = absl::Milliseconds(20);
    options.server.reconnect_backoff_max = absl::Milliseconds(200);
    options.client_id = id;
    options.state_dir = Path(absl::StrCat("client", id));
    options.data.images_path = images_;
    options.data.labels_path = labels_;
    options.data.num_classes = 4;
    options.data.num_partitions = 3;
    options.data.partition_seed = 5;
    options.backoff.initial = absl::Milliseconds(20);
    options.backoff.max = absl::Milliseconds(200);
    options.min_poll = absl::Milliseconds(20);
    options.max_poll = absl::Milliseconds(100);
    options.max_duration = absl::Seconds(20);  // a bound for a broken build, never reached
    return options;
  }

  std::unique_ptr<DeviceLoop> MakeLoop(const DeviceLoopOptions& options) {
    DeviceEnvironment environment;
    environment.log = &log_;
    absl::StatusOr<std::unique_ptr<DeviceLoop>> loop =
        DeviceLoop::Create(options, std::move(environment));
    EXPECT_TRUE(loop.ok()) << loop.status();
    return loop.ok() ? *std::move(loop) : nullptr;
  }

  static const fl::ClientRecord* Record(const fl::CoordinatorStatus& status, fl::ClientId id) {
    for (const fl::ClientStatus& c : status.clients) {
      if (c.record.id == id) return &c.record;
    }
    return nullptr;
  }

  base::FileSystem& fs_ = base::FileSystem::Default();
  base::CapturingLogSink log_;
  std::string dir_;
  std::string images_, labels_;
  std::unique_ptr<server::FederationServer> server_;
};

TEST_F(DeviceLoopServerTest, ThreeDevicesTrainFiveRoundsAndOneRestartsMidRun) {
  StartServer();
  std::vector<fl::ModuleSnapshot> initial = server_->coordinator().Modules();

  struct Outcome {
    absl::Status status;
    DeviceStats stats;
  };
  Outcome one, two_first, two_second, three;
  auto run = [this](const DeviceLoopOptions& options, Outcome* outcome) {
    std::unique_ptr<DeviceLoop> loop = MakeLoop(options);
    if (loop == nullptr) return;
    outcome->status = loop->Run();
    outcome->stats = loop->stats();
  };
  DeviceLoopOptions o1 = Options(1), o2 = Options(2), o3 = Options(3);
  o1.max_rounds = o3.max_rounds = 5;
  std::thread t1(run, o1, &one);
  std::thread t3(run, o3, &three);
  std::thread t2([&] {
    o2.max_rounds = 2;
    run(o2, &two_first);  // then the device "restarts" over the same state directory
    o2.max_rounds = 3;
    run(o2, &two_second);
  });
  t1.join();
  t2.join();
  t3.join();

  for (const Outcome* o : {&one, &two_first, &two_second, &three}) {
    EXPECT_TRUE(o->status.ok()) << o->status;
  }
  EXPECT_EQ(one.stats.participations, 5);
  EXPECT_EQ(three.stats.participations, 5);
  EXPECT_EQ(two_first.stats.participations, 2);
  EXPECT_EQ(two_second.stats.participations, 3);
  EXPECT_EQ(two_second.stats.total_participations, 5);
  for (const Outcome* o : {&one, &two_first, &three}) {
    EXPECT_EQ(o->stats.backbone_downloads, 1);
    EXPECT_EQ(o->stats.duplicates, 0);
  }
  // The restarted device re-attached: same enrolment, cached backbone, no rejoin.
  EXPECT_TRUE(two_second.stats.resumed);
  EXPECT_EQ(two_second.stats.backbone_downloads, 0);
  EXPECT_EQ(two_second.stats.enrolled_round, two_first.stats.enrolled_round);
  EXPECT_EQ(two_second.stats.rejoins, 0);

  // Close the round in progress so every accepted update is counted in the clients' records.
  ASSERT_TRUE(server_->coordinator().CloseRound().ok());
  const fl::CoordinatorStatus status = server_->coordinator().Status();
  EXPECT_GE(status.round, 5);
  for (fl::ClientId id : {1, 2, 3}) {
    const fl::ClientRecord* record = Record(status, id);
    ASSERT_NE(record, nullptr) << id;
    EXPECT_EQ(record->participations, 5) << "client " << id;
  }
  EXPECT_EQ(Record(status, 2)->enrolled_round, two_first.stats.enrolled_round);
  std::vector<fl::ModuleSnapshot> now = server_->coordinator().Modules();
  ASSERT_EQ(now.size(), initial.size());
  for (size_t i = 0; i < now.size(); ++i) {
    EXPECT_GT(now[i].version, 0) << now[i].spec.name;
    EXPECT_NE(now[i].values->flat_values(), initial[i].values->flat_values()) << now[i].spec.name;
  }
}

TEST_F(DeviceLoopServerTest, DeviceSurvivesAServerRestart) {
  StartServer();
  const std::string address = server_->address();
  DeviceLoopOptions options = Options(1);
  options.max_rounds = 4;
  std::unique_ptr<DeviceLoop> loop = MakeLoop(options);
  ASSERT_NE(loop, nullptr);
  absl::Status status = absl::UnknownError("not run");
  std::thread runner([&] { status = loop->Run(); });
  for (int i = 0; i < 1000 && loop->stats().participations < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  StopServer();
  absl::SleepFor(absl::Milliseconds(300));  // the device finds nobody for a while
  StartServer(address);                     // same port, same state directory
  runner.join();
  EXPECT_TRUE(status.ok()) << status;
  const DeviceStats stats = loop->stats();
  EXPECT_EQ(stats.participations, 4);
  EXPECT_EQ(stats.rejoins, 0) << "the restarted server still knows the client";
  ASSERT_TRUE(server_->coordinator().CloseRound().ok());
  const fl::CoordinatorStatus server_status = server_->coordinator().Status();
  const fl::ClientRecord* record = Record(server_status, 1);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->participations, 4);
  EXPECT_EQ(record->enrolled_round, stats.enrolled_round);
}

TEST_F(DeviceLoopServerTest, BadTokensStopTheDeviceAtOnce) {
  StartServer();
  DeviceLoopOptions options = Options(3);
  options.server.token = "not-a-token";
  std::unique_ptr<DeviceLoop> loop = MakeLoop(options);
  absl::Status status = loop->Run();
  EXPECT_TRUE(absl::IsUnauthenticated(status)) << status;
  EXPECT_EQ(loop->stats().retries, 0);

  options.server.token = TokenOf(1);  // a valid token of another client
  options.state_dir = Path("client3b");
  loop = MakeLoop(options);
  status = loop->Run();
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
}

TEST_F(DeviceLoopServerTest, FederationClientSpeaksTheProtocol) {
  StartServer();
  FederationClientOptions options;
  options.target = server_->address();
  options.token = TokenOf(2);
  absl::StatusOr<std::unique_ptr<FederationClient>> client = FederationClient::Create(options, fs_);
  ASSERT_TRUE(client.ok()) << client.status();

  absl::StatusOr<JoinResult> joined = (*client)->Join(2, "test");
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->server.protocol, "fedcl.v1");
  EXPECT_EQ(joined->server.chunk_bytes, 1024);
  EXPECT_EQ(joined->server.model.num_classes, 4);

  absl::StatusOr<std::string> backbone = (*client)->DownloadBackbone(2);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  EXPECT_GT(backbone->size(), 3000u) << "several 1 KiB chunks";
  EXPECT_EQ(proto::Sha256Hex(*backbone), joined->server.backbone_digest);

  absl::StatusOr<fl::WorkAssignment> work = (*client)->GetWork(2, {});
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_EQ(work->action, fl::WorkAssignment::Action::kTrain);
  ASSERT_EQ(work->modules.size(), 2u);
  EXPECT_TRUE(work->modules[0].download);

  fl::LocalUpdate update;
  update.num_samples = 8;
  update.local_steps = 1;
  update.loss = 1.0;
  for (const fl::ModuleInfo& info : work->modules) {
    absl::StatusOr<DownloadedModule> module =
        (*client)->DownloadModule(2, info.spec.name, info.version);
    ASSERT_TRUE(module.ok()) << module.status();
    EXPECT_EQ(module->values.num_values(), info.num_values);
    fl::ModuleUpdate delta;
    delta.name = info.spec.name;
    delta.base_version = info.version;
    for (const nn::TensorInfo& t : module->values.tensors())
      delta.layout.push_back({t.name, t.shape});
    delta.values.assign(module->values.num_values(), 0.001f);
    update.modules.push_back(std::move(delta));
  }
  EXPECT_TRUE(absl::IsNotFound((*client)->DownloadModule(2, "head", 99).status()));

  absl::StatusOr<fl::SubmitResult> result = (*client)->SubmitUpdate(2, work->round, update, 1024);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->duplicate);
  EXPECT_GT(result->weight, 0.0);
  result = (*client)->SubmitUpdate(2, work->round, update, 1024);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->duplicate);
  // A round that has not opened is refused with its code, the server's message kept.
  EXPECT_TRUE(
      absl::IsOutOfRange((*client)->SubmitUpdate(2, work->round + 5, update, 1024).status()));

  absl::StatusOr<v1::GetStatusResponse> status = (*client)->GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->accepted_this_round(), 1);
  EXPECT_TRUE((*client)->Leave(2, /*permanent=*/false).ok());
}

}  // namespace
}  // namespace fedcl::client
