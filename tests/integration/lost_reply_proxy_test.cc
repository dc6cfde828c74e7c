// Lost replies on a real link (issue 16, defect 1): a device's DeviceSession over GrpcPort reaches
// a real fedcl-server through LossyLinkProxy, which relays the upload whole and then cuts the
// connection where the server's reply starts (lossy_link_proxy.h says how it knows). The
// server keeps the update; the device sees UNAVAILABLE, keeps the update in flight, and resends it
// at its next Begin: the server must acknowledge the replay as a duplicate and count each
// participation once — while the round is still open, and after it closed without the device
// hearing back (where the defect double-counted: the learning came back in the next round).
//
// The server listens in plaintext here (tokens still checked): the relay recognises the reply by
// its HTTP/2 frame, which TLS would hide. It drops exactly the reply, not the upload: every byte
// the client sent was relayed, and the server had kept the update before the reply's first frame.
//
// Deterministic: rounds close by quota (2 of 2 clients), never by a timer; the proxy decides by
// the framing, not by timing. Every call has a 5 s deadline and every retry loop a count.
#include <fstream>
#include <iterator>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/base/filesystem.h"
#include "core/device/device_session.h"
#include "gtest/gtest.h"
#include "proto/grpc_port.h"
#include "tests/client/client_test_util.h"
#include "tests/integration/child_process.h"
#include "tests/integration/lossy_link_proxy.h"
#include "tests/integration/server_fixture.h"
#include "tests/integration/step_trainer.h"

namespace fedcl::testing {
namespace {

// 128 hidden units, 8 classes: a head of 1032 values, whose update (4 KB of data) the proxy
// tells from every other call by its size.
constexpr int kHidden = 128, kClasses = 8;
constexpr int64_t kMinUploadBytes = 2048;

std::string PlaintextConfig(const ServerFixture& f) {
  const std::string& d = f.dir();
  return absl::StrCat("state_dir: \"", d, "/state\"\n", "backbone_checkpoint: \"", d,
                      "/backbone_128.ckpt\"\n", "num_classes: ", kClasses, "\n", "tokens_file: \"",
                      d, "/tokens.txt\"\n", "module { name: \"head\" role: \"head\" }\n",
                      "aggregator { kind: \"average_participating\" }\n",
                      "round { duration_ms: 86400000 max_participants: 2 }\n");
}

// One device: a session over a GrpcPort to `target` (the server, or the proxy before it).
class Device {
 public:
  Device(ServerFixture& f, int client, const std::string& target) {
    proto::GrpcPortOptions options;
    options.target = target;
    options.token = f.token(client);
    options.call_timeout = absl::Seconds(5);
    options.reconnect_backoff_initial = absl::Milliseconds(20);
    options.reconnect_backoff_max = absl::Milliseconds(100);
    auto port = proto::GrpcPort::Create(options, base::FileSystem::Default());
    EXPECT_TRUE(port.ok()) << port.status();
    port_ = *std::move(port);
    auto joined = port_->Join(client, "lost-reply-test");
    EXPECT_TRUE(joined.ok()) << joined.status();
    auto head = port_->DownloadModule(client, "head", 0);
    EXPECT_TRUE(head.ok()) << head.status();
    head->values.set_name("head");
    initial_ =
        std::vector<float>(head->values.flat_values().begin(), head->values.flat_values().end());
    trainer_ = std::make_unique<StepTrainer>(std::move(head->values));
    device::SessionOptions session_options;
    session_options.client_id = client;
    session_ = std::make_unique<device::DeviceSession>(
        session_options, *trainer_, device::SessionEnvironment{.port = port_.get(), .mu = &mu_});
    EXPECT_TRUE(session_->Joined(*joined).ok());
  }

  void Learn(int64_t index, float value) {
    std::lock_guard<std::mutex> lock(mu_);
    trainer_->Learn(index, value);
    session_->AfterLearnLocked(/*samples=*/1, /*loss=*/0.5);
  }
  // Begin, retried while the link fails (at most 20 times).
  absl::StatusOr<device::RoundWork> BeginUntilOk() {
    absl::StatusOr<device::RoundWork> work = session_->Begin();
    for (int i = 0; i < 20 && absl::IsUnavailable(work.status()); ++i) {
      absl::SleepFor(absl::Milliseconds(50));
      work = session_->Begin();
    }
    return work;
  }
  device::DeviceSession& session() { return *session_; }
  bool InFlight() {
    std::lock_guard<std::mutex> lock(mu_);
    return session_->InFlightLocked();
  }
  device::DeviceSession::Counters counters() {
    std::lock_guard<std::mutex> lock(mu_);
    return session_->CountersLocked();
  }
  proto::GrpcPort& port() { return *port_; }
  const std::vector<float>& initial() const { return initial_; }

 private:
  std::unique_ptr<proto::GrpcPort> port_;
  std::unique_ptr<StepTrainer> trainer_;
  std::mutex mu_;
  std::unique_ptr<device::DeviceSession> session_;
  std::vector<float> initial_;
};

int Port(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

// The server's metrics lines once `rounds` are there: it appends a round's line after the round
// closed, so this waits for them (10 s at most).
std::vector<std::string> MetricsLines(const ServerFixture& f, size_t rounds) {
  std::vector<std::string> lines;
  for (int i = 0; i < 200 && lines.size() < rounds; ++i) {
    if (i > 0) absl::SleepFor(absl::Milliseconds(50));
    lines.clear();
    std::ifstream metrics(f.dir() + "/state/metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) lines.push_back(line);
  }
  return lines;
}

// Learns one step and submits it for the round Begin offers; expects the server to take it.
void LearnAndSubmit(Device& d, int64_t round, int64_t index, float value) {
  auto work = d.BeginUntilOk();
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_TRUE(work->train);
  ASSERT_EQ(work->round, round);
  d.Learn(index, value);
  auto outcome = d.session().Submit(round);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->kind, device::SubmitOutcome::Kind::kAccepted);
}

TEST(LostReplyProxyTest, AnUploadWhoseReplyIsLostIsResentAndCountedOnce) {
  ServerFixture f;
  SaveMlpBackbone(f.dir() + "/backbone_128.ckpt", kHidden, kClasses);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  f.WriteRawConfig(PlaintextConfig(f));
  f.StartServer();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  auto proxy = LossyLinkProxy::Start(Port(f.address()), kMinUploadBytes);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  Device a(f, 1, (*proxy)->address());  // behind the lossy link
  Device b(f, 2, f.address());
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::vector<float> initial = a.initial();

  // Round 0: the reply is lost while the round stays open.
  auto work = a.BeginUntilOk();
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_TRUE(work->train);
  ASSERT_EQ(work->round, 0);
  a.Learn(0, 1.0f / 8);
  (*proxy)->DropNextReplies(1);
  auto lost = a.session().Submit(0);
  EXPECT_TRUE(absl::IsUnavailable(lost.status())) << lost.status();
  EXPECT_EQ((*proxy)->replies_dropped(), 1);
  EXPECT_TRUE(a.InFlight()) << "an unanswered update stays in flight";
  auto status = b.port().GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->accepted_this_round(), 1) << "the server kept the update";
  work = a.BeginUntilOk();  // resends the update in flight first
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_NE(work->resolved, nullptr);
  EXPECT_EQ(work->resolved->kind, device::SubmitOutcome::Kind::kDuplicate);
  EXPECT_FALSE(work->train) << "the server has this device's update of round 0";
  LearnAndSubmit(b, 0, 1, 2.0f / 8);  // the quota of 2: round 0 closes

  // Round 1: the reply is lost, and so is the reply to the first resend; the round closes before
  // the device hears back (the defect: the learning came back, counted again, in round 2).
  work = a.BeginUntilOk();
  ASSERT_TRUE(work.ok()) << work.status();
  ASSERT_TRUE(work->train);
  ASSERT_EQ(work->round, 1);
  a.Learn(2, 3.0f / 8);
  (*proxy)->DropNextReplies(2);
  lost = a.session().Submit(1);
  EXPECT_TRUE(absl::IsUnavailable(lost.status())) << lost.status();
  LearnAndSubmit(b, 1, 3, 4.0f / 8);  // round 1 closes with both updates
  work = a.BeginUntilOk();
  ASSERT_TRUE(work.ok()) << work.status();
  EXPECT_EQ((*proxy)->replies_dropped(), 3);
  ASSERT_NE(work->resolved, nullptr);
  EXPECT_EQ(work->resolved->kind, device::SubmitOutcome::Kind::kDuplicate);
  ASSERT_TRUE(work->train);
  ASSERT_EQ(work->round, 2);
  auto nothing = a.session().Submit(2);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(nothing->kind, device::SubmitOutcome::Kind::kNothingToSubmit)
      << "the learning of round 1 is the server's already";

  // Round 2, undisturbed.
  a.Learn(4, 5.0f / 8);
  auto taken = a.session().Submit(2);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->kind, device::SubmitOutcome::Kind::kAccepted);
  LearnAndSubmit(b, 2, 5, 6.0f / 8);

  // Each participation counted once: by the server's status, its metrics, and the module.
  status = b.port().GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->round(), 3);
  for (const auto& c : status->clients()) {
    EXPECT_EQ(c.participations(), 3) << "client " << c.client_id();
    EXPECT_EQ(c.last_participation_round(), 2) << "client " << c.client_id();
  }
  const std::vector<std::string> lines = MetricsLines(f, 3);
  EXPECT_EQ(lines.size(), 3u);
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("\"participants\":2,"), std::string::npos) << line;
    EXPECT_NE(line.find("\"samples\":2,"), std::string::npos) << line;
  }
  EXPECT_EQ(a.counters().submissions, 3);
  EXPECT_EQ(a.counters().duplicates, 2);
  ASSERT_EQ(status->modules_size(), 1) << status->DebugString();
  auto head = b.port().DownloadModule(2, "head", status->modules(0).version());
  ASSERT_TRUE(head.ok()) << head.status();
  const auto values = head->values.flat_values();
  ASSERT_EQ(static_cast<size_t>(values.size()), initial.size());
  // average_participating over 2 participants: coordinate i moved by step i's value / 2, once.
  for (size_t i = 0; i < initial.size(); ++i) {
    const double moved = i < 6 ? (i + 1) / 8.0 / 2 : 0.0;
    EXPECT_NEAR(values[static_cast<int64_t>(i)], initial[i] + moved, 1e-6) << "coordinate " << i;
  }
}

// The same defect with the shipped device process: fedcl-client behind the lossy link, against a
// server whose rounds close at their first update. The replies to the first update and to its
// first resend are lost; the round has closed when the second resend arrives, and the server must
// acknowledge it as the duplicate it is. Each of the device's three updates counts once.
TEST(LostReplyProxyTest, AFedclClientProcessCountsEachUpdateOnceThroughLostReplies) {
  ServerFixture f;
  SaveMlpBackbone(f.dir() + "/backbone_128.ckpt", kHidden, kClasses);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  std::string config = PlaintextConfig(f);
  config.replace(config.find("max_participants: 2"), 19, "max_participants: 1");
  f.WriteRawConfig(config);
  f.StartServer();
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  auto proxy = LossyLinkProxy::Start(Port(f.address()), kMinUploadBytes);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  (*proxy)->DropNextReplies(2);
  const auto [images, labels] =
      client::testing::WriteSyntheticIdx(base::FileSystem::Default(), f.dir() + "/data", 400, 3);
  const std::string log = f.dir() + "/client-1.log";
  auto client = ChildProcess::Start(
      {BinaryPath("fedcl-client"), "--server=" + (*proxy)->address(), "--client_id=1",
       "--token_file=" + f.TokenFile(1), "--state_dir=" + f.dir() + "/client-1",
       "--images=" + images, "--labels=" + labels, absl::StrCat("--num_classes=", kClasses),
       "--rounds=3", "--duration=60s", "--call_timeout=5s", "--max_poll=100ms",
       "--backoff_initial=20ms", "--backoff_max=200ms"},
      log);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<int> code = (*client)->Wait(absl::Seconds(90));
  ASSERT_TRUE(code.ok()) << code.status();
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(*code, 0) << text;
  EXPECT_EQ((*proxy)->replies_dropped(), 2);

  // The device's log: three updates acknowledged, the first as the duplicate of what the server
  // had kept.
  const std::regex acknowledged(R"(round (\d+): \d+ samples, .*duplicate (yes|no))");
  std::vector<std::pair<int, std::string>> rounds;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), acknowledged);
       it != std::sregex_iterator(); ++it) {
    rounds.emplace_back(std::stoi((*it)[1]), (*it)[2]);
  }
  ASSERT_EQ(rounds.size(), 3u) << text;
  EXPECT_EQ(rounds[0], (std::pair<int, std::string>{0, "yes"})) << text;
  EXPECT_EQ(rounds[1], (std::pair<int, std::string>{1, "no"})) << text;
  EXPECT_EQ(rounds[2], (std::pair<int, std::string>{2, "no"})) << text;

  // The server's: three rounds of one participant each, the device counted three times.
  proto::GrpcPortOptions options;  // plaintext: the fixture's own stub speaks TLS
  options.target = f.address();
  options.token = f.token(1);
  options.call_timeout = absl::Seconds(5);
  auto observer = proto::GrpcPort::Create(options, base::FileSystem::Default());
  ASSERT_TRUE(observer.ok()) << observer.status();
  auto status = (*observer)->GetStatus();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->round(), 3);
  bool found = false;
  for (const auto& c : status->clients()) {
    if (c.client_id() != 1) continue;
    found = true;
    EXPECT_EQ(c.participations(), 3);
  }
  EXPECT_TRUE(found) << status->DebugString();
  const std::vector<std::string> lines = MetricsLines(f, 3);
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& line : lines) {
    EXPECT_NE(line.find("\"participants\":1,"), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace fedcl::testing
