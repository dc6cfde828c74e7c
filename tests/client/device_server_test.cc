// fedcl-client devices and the GrpcPort against a real fedcl-server (FederationServer) on
// 127.0.0.1:0, with tokens, chunked transfers, SQLite state and short rounds. Assertions are on
// counts that do not depend on timing: every device runs until it has a fixed number of
// acknowledged updates.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/device.h"
#include "core/base/log.h"
#include "core/device/in_process_port.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/digest.h"
#include "proto/grpc_port.h"
#include "server/federation_server.h"
#include "server/server_config.h"
#include "tests/client/client_test_util.h"
#include "tests/support/faulty_port.h"

namespace fedcl::client {
namespace {

std::string TokenOf(fl::ClientId id) { return absl::StrCat("test-token-of-client-", id, "-f00d"); }

class DeviceServerTest : public ::testing::Test {
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

  // Starts the server on `address` (port 0 picks one). With `close_at_first_update`, a round
  // closes as soon as it has one update (no timing involved).
  void StartServer(const std::string& address = "127.0.0.1:0", bool close_at_first_update = false) {
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
          round { duration_ms: 400 min_participants: 1 max_participants: %d }
          limits { max_message_bytes: 65536 chunk_bytes: 1024 }
          tokens_file: "%s"
          journal { sync: "normal" }
          seed: 1
          upload_compression: "%s"
        )pb",
        Path("server"), Path("backbone.ckpt"), close_at_first_update ? 1 : 3, Path("tokens"),
        upload_compression_);
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

  DeviceOptions Options(fl::ClientId id) const {
    DeviceOptions options;
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

  std::unique_ptr<Device> MakeDevice(const DeviceOptions& options) {
    DeviceEnvironment environment;
    environment.log = &log_;
    absl::StatusOr<std::unique_ptr<Device>> device =
        Device::Create(options, std::move(environment));
    EXPECT_TRUE(device.ok()) << device.status();
    return device.ok() ? *std::move(device) : nullptr;
  }

  static const fl::ClientRecord* Record(const fl::CoordinatorStatus& status, fl::ClientId id) {
    for (const fl::ClientStatus& c : status.clients) {
      if (c.record.id == id) return &c.record;
    }
    return nullptr;
  }

  // The bodies of LostRepliesOfTheRealServerAreCountedOnce and
  // TheSameDeviceOverEitherPortLearnsBitForBitTheSame, for each codec.
  void RunLostReplies();
  void RunOverEitherPort();

  base::FileSystem& fs_ = base::FileSystem::Default();
  base::CapturingLogSink log_;
  std::string dir_;
  std::string images_, labels_;
  std::unique_ptr<server::FederationServer> server_;
  std::string upload_compression_;  // the server's ServerConfig.upload_compression
};

TEST_F(DeviceServerTest, ThreeDevicesTrainFiveRoundsAndOneRestartsMidRun) {
  StartServer();
  std::vector<fl::ModuleSnapshot> initial = server_->coordinator().Modules();

  struct Outcome {
    absl::Status status;
    DeviceStats stats;
  };
  Outcome one, two_first, two_second, three;
  auto run = [this](const DeviceOptions& options, Outcome* outcome) {
    std::unique_ptr<Device> device = MakeDevice(options);
    if (device == nullptr) return;
    outcome->status = device->Run();
    outcome->stats = device->stats();
  };
  DeviceOptions o1 = Options(1), o2 = Options(2), o3 = Options(3);
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

TEST_F(DeviceServerTest, DeviceSurvivesAServerRestart) {
  StartServer();
  const std::string address = server_->address();
  DeviceOptions options = Options(1);
  options.max_rounds = 4;
  std::unique_ptr<Device> device = MakeDevice(options);
  ASSERT_NE(device, nullptr);
  absl::Status status = absl::UnknownError("not run");
  std::thread runner([&] { status = device->Run(); });
  for (int i = 0; i < 1000 && device->stats().participations < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  StopServer();
  absl::SleepFor(absl::Milliseconds(300));  // the device finds nobody for a while
  StartServer(address);                     // same port, same state directory
  runner.join();
  EXPECT_TRUE(status.ok()) << status;
  const DeviceStats stats = device->stats();
  EXPECT_EQ(stats.participations, 4);
  EXPECT_EQ(stats.rejoins, 0) << "the restarted server still knows the client";
  ASSERT_TRUE(server_->coordinator().CloseRound().ok());
  const fl::CoordinatorStatus server_status = server_->coordinator().Status();
  const fl::ClientRecord* record = Record(server_status, 1);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->participations, 4);
  EXPECT_EQ(record->enrolled_round, stats.enrolled_round);
}

TEST_F(DeviceServerTest, LostRepliesOfTheRealServerAreCountedOnce) {
  // The server receives and acknowledges each of the first two sends of client 3's first update,
  // but the device never sees the replies: it resends the same update until one reply arrives.
  for (const char* codec : {"", "topk:0.2:16"}) {
    SCOPED_TRACE(codec);
    upload_compression_ = codec;
    RunLostReplies();
    StopServer();
    std::filesystem::remove_all(Path("server"));
    std::filesystem::remove_all(Path("client3"));
  }
}

void DeviceServerTest::RunLostReplies() {
  StartServer();
  DeviceOptions options = Options(3);
  options.max_rounds = 3;
  absl::StatusOr<std::unique_ptr<proto::GrpcPort>> grpc =
      proto::GrpcPort::Create(options.server, fs_);
  ASSERT_TRUE(grpc.ok()) << grpc.status();
  auto faulty = std::make_unique<fedcl::testing::FaultyPort>(**grpc);
  faulty->lose_acknowledgements = 2;
  fedcl::testing::FaultyPort* port = faulty.get();
  DeviceEnvironment environment;
  environment.log = &log_;
  environment.port = std::move(faulty);
  absl::StatusOr<std::unique_ptr<Device>> device = Device::Create(options, std::move(environment));
  ASSERT_TRUE(device.ok()) << device.status();
  ASSERT_TRUE((*device)->Run().ok());
  const DeviceStats stats = (*device)->stats();
  EXPECT_EQ(stats.participations, 3);
  EXPECT_EQ(stats.duplicates, 1) << "the reply that arrived was the server's duplicate";
  EXPECT_EQ(stats.retries, 2);
  EXPECT_EQ(port->submissions, 5);
  ASSERT_EQ(port->duplicates.size(), 5u);
  EXPECT_EQ(std::count(port->duplicates.begin(), port->duplicates.end(), true), 2);
  ASSERT_TRUE(server_->coordinator().CloseRound().ok());
  const fl::ClientRecord* record = Record(server_->coordinator().Status(), 3);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->participations, 3) << "three updates, each counted once";
  // Every send of an update is the same bytes: the resent update is the one acknowledged.
  ASSERT_EQ(port->submitted_updates.size(), 5u);
  for (size_t resend : {1u, 2u}) {
    ASSERT_EQ(port->submitted_updates[resend].modules.size(),
              port->submitted_updates[0].modules.size());
    for (size_t m = 0; m < port->submitted_updates[0].modules.size(); ++m) {
      const fl::ModuleUpdate& first = port->submitted_updates[0].modules[m];
      const fl::ModuleUpdate& again = port->submitted_updates[resend].modules[m];
      EXPECT_EQ(again.values, first.values) << "send " << resend << " of module " << m;
      EXPECT_EQ(again.compressed.has_value(), !upload_compression_.empty());
      if (first.compressed.has_value() && again.compressed.has_value()) {
        EXPECT_EQ(again.compressed->indices, first.compressed->indices);
        EXPECT_EQ(again.compressed->quantized, first.compressed->quantized);
      }
    }
  }
}

// The port carries the conversation and changes nothing in it: the same device over the real
// server's gRPC port and over an in-process port to a server started the same way submits the
// same updates, and the server's modules end bit-for-bit the same.
// With compressed uploads too: the server asks for the codec in its work, the device compresses
// with error feedback, and the server decodes the bytes to exactly the values the in-process
// server folds.
TEST_F(DeviceServerTest, TheSameDeviceOverEitherPortLearnsBitForBitTheSame) {
  for (const char* codec : {"", "float16", "int8:16", "topk:0.25:16"}) {
    SCOPED_TRACE(codec);
    upload_compression_ = codec;
    RunOverEitherPort();
  }
}

void DeviceServerTest::RunOverEitherPort() {
  struct Run {
    std::vector<fl::ModuleSnapshot> modules;
    std::vector<fl::LocalUpdate> updates;
  };
  device::JoinResult joined;
  std::string backbone;  // as the server serves it
  auto run = [&](bool in_process) -> Run {
    StartServer("127.0.0.1:0", /*close_at_first_update=*/true);
    DeviceOptions options = Options(2);
    options.max_rounds = 3;
    absl::StatusOr<std::unique_ptr<proto::GrpcPort>> grpc =
        proto::GrpcPort::Create(options.server, fs_);
    EXPECT_TRUE(grpc.ok()) << grpc.status();
    if (!in_process) {
      absl::StatusOr<device::JoinResult> j = (*grpc)->Join(2, "test");
      EXPECT_TRUE(j.ok()) << j.status();
      joined = *j;
      absl::StatusOr<std::string> served = (*grpc)->DownloadBackbone(2);
      EXPECT_TRUE(served.ok()) << served.status();
      backbone = *served;
    }
    std::unique_ptr<device::FederationPort> inner =
        in_process ? std::unique_ptr<device::FederationPort>(
                         new device::InProcessPort(server_->coordinator(), joined.server, backbone))
                   : std::unique_ptr<device::FederationPort>(std::move(*grpc));
    auto recording = std::make_unique<fedcl::testing::FaultyPort>(*inner);
    fedcl::testing::FaultyPort* recorder = recording.get();
    DeviceEnvironment environment;
    environment.log = &log_;
    environment.port = std::move(recording);
    absl::StatusOr<std::unique_ptr<Device>> device =
        Device::Create(options, std::move(environment));
    EXPECT_TRUE(device.ok()) << device.status();
    EXPECT_TRUE((*device)->Run().ok());
    EXPECT_EQ((*device)->stats().participations, 3);
    Run out{server_->coordinator().Modules(), recorder->submitted_updates};
    device->reset();
    StopServer();
    std::filesystem::remove_all(Path("server"));
    std::filesystem::remove_all(Path("client2"));
    return out;
  };
  const Run over_grpc = run(false);
  const Run in_process = run(true);
  ASSERT_EQ(over_grpc.updates.size(), 3u);
  ASSERT_EQ(in_process.updates.size(), 3u);
  for (size_t u = 0; u < 3; ++u) {
    const fl::LocalUpdate& a = over_grpc.updates[u];
    const fl::LocalUpdate& b = in_process.updates[u];
    EXPECT_EQ(a.num_samples, b.num_samples);
    EXPECT_EQ(a.loss, b.loss) << "update " << u;
    ASSERT_EQ(a.modules.size(), b.modules.size());
    ASSERT_FALSE(a.modules.empty()) << "update " << u << " compares nothing";
    for (size_t m = 0; m < a.modules.size(); ++m) {
      EXPECT_EQ(a.modules[m].name, b.modules[m].name);
      EXPECT_EQ(a.modules[m].values, b.modules[m].values) << "update " << u << " module " << m;
    }
  }
  for (const fl::LocalUpdate& update : over_grpc.updates) {
    for (const fl::ModuleUpdate& m : update.modules) {
      // The work asked for the codec over the wire, and the device used it.
      ASSERT_EQ(m.compressed.has_value(), !upload_compression_.empty()) << m.name;
      if (m.compressed.has_value()) {
        EXPECT_EQ(fl::CompressionSpecText(m.compressed->spec),
                  fl::CompressionSpecText(*fl::ParseCompressionSpec(upload_compression_)));
        EXPECT_LT(m.upload_bytes(), static_cast<int64_t>(m.values.size() * sizeof(float)));
      }
    }
  }
  ASSERT_EQ(over_grpc.modules.size(), in_process.modules.size());
  ASSERT_FALSE(over_grpc.modules.empty());
  for (size_t m = 0; m < over_grpc.modules.size(); ++m) {
    EXPECT_EQ(over_grpc.modules[m].version, in_process.modules[m].version);
    EXPECT_EQ(over_grpc.modules[m].values->flat_values(),
              in_process.modules[m].values->flat_values())
        << over_grpc.modules[m].spec.name;
  }
}

TEST_F(DeviceServerTest, AContinualDeviceSharesItsLearningThroughTheServer) {
  StartServer();
  const std::vector<fl::ModuleSnapshot> initial = server_->coordinator().Modules();
  DeviceOptions options = Options(1);
  options.method = "linear_head";
  options.batch_size = 8;
  options.batches_per_sync = 5;
  options.max_rounds = 2;
  std::unique_ptr<Device> device = MakeDevice(options);
  ASSERT_NE(device, nullptr);
  ASSERT_TRUE(device->Run().ok());
  const DeviceStats stats = device->stats();
  EXPECT_GE(stats.batches, 10);
  EXPECT_GE(stats.participations, 1);
  ASSERT_TRUE(server_->coordinator().CloseRound().ok());
  const fl::ClientRecord* record = Record(server_->coordinator().Status(), 1);
  ASSERT_NE(record, nullptr);
  EXPECT_EQ(record->participations, stats.participations);
  const std::vector<fl::ModuleSnapshot> modules = server_->coordinator().Modules();
  ASSERT_EQ(modules.size(), initial.size());
  int compared = 0, heads = 0;
  for (const fl::ModuleSnapshot& m : modules) {
    for (const fl::ModuleSnapshot& before : initial) {
      if (before.spec.name != m.spec.name) continue;
      ++compared;
      heads += m.spec.name == "head";
      if (m.spec.name == "head") {
        EXPECT_NE(m.values->flat_values(), before.values->flat_values()) << "learned";
      } else {
        EXPECT_EQ(m.values->flat_values(), before.values->flat_values()) << m.spec.name;
      }
    }
  }
  EXPECT_EQ(compared, static_cast<int>(modules.size())) << "every module compared";
  EXPECT_EQ(heads, 1);
}

TEST_F(DeviceServerTest, BadTokensStopTheDeviceAtOnce) {
  StartServer();
  DeviceOptions options = Options(3);
  options.server.token = "not-a-token";
  std::unique_ptr<Device> device = MakeDevice(options);
  absl::Status status = device->Run();
  EXPECT_TRUE(absl::IsUnauthenticated(status)) << status;
  EXPECT_EQ(device->stats().retries, 0);

  options.server.token = TokenOf(1);  // a valid token of another client
  options.state_dir = Path("client3b");
  device = MakeDevice(options);
  status = device->Run();
  EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
}

TEST_F(DeviceServerTest, GrpcPortSpeaksTheProtocol) {
  StartServer();
  proto::GrpcPortOptions options;
  options.target = server_->address();
  options.token = TokenOf(2);
  absl::StatusOr<std::unique_ptr<proto::GrpcPort>> client = proto::GrpcPort::Create(options, fs_);
  ASSERT_TRUE(client.ok()) << client.status();

  absl::StatusOr<device::JoinResult> joined = (*client)->Join(2, "test");
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
    absl::StatusOr<device::DownloadedModule> module =
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
