// One fedcl-server and eight fedcl-client processes on 127.0.0.1, over TLS with tokens, for 20+
// rounds with heterogeneous participation: the federated modules beat the frozen backbone, and
// the FedAU weights the server applied and reports match what each device saw. And the same with
// asynchronous (fedbuff) rounds and devices of eight speeds.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>

#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "core/base/random.h"
#include "core/data/fashion_mnist.h"
#include "core/fl/client_model.h"
#include "core/fl/fedau_estimator.h"
#include "core/nn/training.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "tests/integration/server_fixture.h"

namespace fedcl::testing {
namespace {

constexpr int kClients = 8;
constexpr int kRounds = 20;
constexpr double kParticipation[kClients] = {1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3};
constexpr uint64_t kParticipationSeed = 2;  // fedcl-client's --participation_seed default
constexpr const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Accuracy of the server's backbone with `modules` installed, on the first 2000 test images.
double Accuracy(const std::string& backbone, const std::map<std::string, fl::ModuleSpec>& specs,
                const std::map<std::string, std::vector<float>>& modules) {
  auto loaded = proto::LoadCheckpoint(base::FileSystem::Default(), backbone,
                                      proto::kDefaultMaxCheckpointBytes);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  loaded->modules.clear();
  fl::ClientModel replica(std::move(loaded->model));
  for (const auto& [name, values] : modules) {
    // The layout comes from a fresh module of the same spec; only the values are the server's.
    nn::ParameterSet set;
    const fl::ModuleSpec& spec = specs.at(name);
    if (spec.role == fl::ModuleRole::kHead) {
      set = replica.model().head().parameters();
    } else {
      base::Rng rng(1);
      set =
          (*peft::PetModule::Create(name, spec.pet, replica.model().backbone(), rng))->parameters();
    }
    EXPECT_EQ(set.num_values(), static_cast<int64_t>(values.size())) << name;
    std::copy(values.begin(), values.end(), set.flat_values().data());
    EXPECT_TRUE(replica.Install(spec, 0, set).ok());
  }
  data::FashionMnistOptions options;
  options.max_samples = 2000;
  auto test = data::LoadFashionMnist(base::FileSystem::Default(), options, data::Split::kTest);
  EXPECT_TRUE(test.ok()) << test.status();
  return nn::Evaluate(replica.model(), test->images, test->labels).accuracy;
}

// fedcl-pretrain's MLP on classes 0-4 (one epoch on 10,000 images) into `path`.
void PretrainHalfTheClasses(ServerFixture& f, const std::string& path) {
  auto pretrain = ChildProcess::Start(
      {BinaryPath("fedcl-pretrain"), "--model=mlp", "--classes=0-4", "--epochs=1",
       "--train_end=10000", "--progress_interval=0", "--output=" + path},
      f.dir() + "/pretrain.log");
  ASSERT_TRUE(pretrain.ok());
  ASSERT_EQ(*(*pretrain)->Wait(absl::Seconds(60)), 0) << ReadText(f.dir() + "/pretrain.log");
}

TEST(FederationTest, EightDevicesTwentyRoundsBeatTheFrozenBackboneWithMatchingFedAuWeights) {
  if (!base::FileSystem::Default().Exists(kFashionMnist)) GTEST_SKIP() << "no Fashion-MNIST";
  ServerFixture f;
  // A backbone pretrained on half the classes; the federation learns all ten.
  const std::string backbone = f.dir() + "/pretrained.ckpt";
  ASSERT_NO_FATAL_FAILURE(PretrainHalfTheClasses(f, backbone));

  f.WriteRawConfig(absl::StrCat(
      f.TlsConfigHead(backbone), "module { name: \"ssf\" role: \"pet\" pet { kind: \"ssf\" } }\n",
      "module { name: \"head\" role: \"head\" }\n",
      "recipe { local_steps: 10 batch_size: 32 learning_rate: 0.1 }\n",
      // The test closes every round itself once the devices drawn for it have submitted (the
      // barrier policy with the test as its one reporter), so no round depends on a timer.
      "round { duration_ms: 600000 shards: 1 }\n", "evaluation { data_dir: \"", kFashionMnist,
      "\" max_samples: 2000 }\n"));
  f.StartServer();
  const std::map<std::string, fl::ModuleSpec> specs = {
      {"ssf", {"ssf", fl::ModuleRole::kPet, {}}}, {"head", {"head", fl::ModuleRole::kHead, {}}}};

  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (int c = 0; c < kClients; ++c) {
    auto client =
        ChildProcess::Start({BinaryPath("fedcl-client"), "--server=" + f.address(),
                             "--tls_ca=" + f.dir() + "/tls/ca.pem", "--tls_server_name=localhost",
                             absl::StrCat("--client_id=", c), "--token_file=" + f.TokenFile(c),
                             absl::StrCat("--state_dir=", f.dir(), "/client-", c),
                             absl::StrCat("--data_dir=", kFashionMnist), "--partition=dirichlet",
                             "--dirichlet_alpha=0.5", absl::StrCat("--num_partitions=", kClients),
                             absl::StrCat("--participation=", kParticipation[c]),
                             absl::StrCat("--participation_seed=", kParticipationSeed),
                             "--max_poll=200ms", "--max_samples=20000", "--duration=3m"},
                            absl::StrCat(f.dir(), "/client-", c, ".log"));
    ASSERT_TRUE(client.ok());
    clients.push_back(*std::move(client));
  }
  // The frozen backbone with the initial (untrained) modules is the baseline.
  std::map<std::string, std::vector<float>> initial;
  for (const char* name : {"ssf", "head"}) {
    auto values = f.DownloadModule(0, name, 0);
    ASSERT_TRUE(values.ok()) << values.status();
    initial[name] = *values;
  }
  const std::string served = f.dir() + "/state/backbone.ckpt";
  const double baseline = Accuracy(served, specs, initial);

  fedcl::v1::GetStatusResponse status;
  for (int64_t round = 0; round < kRounds; ++round) {
    // Who takes part in `round` is each device's keyed draw (client/device.h), so the test knows
    // how many updates close it.
    int64_t expected = 0;
    for (int c = 0; c < kClients; ++c) {
      expected += kParticipation[c] >= 1.0 ||
                  base::Rng::ForStream(kParticipationSeed,
                                       {static_cast<uint64_t>(c), static_cast<uint64_t>(round)})
                      .Bernoulli(kParticipation[c]);
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    do {
      ASSERT_TRUE(f.Status(&status).ok());
      ASSERT_EQ(status.round(), round);
      if (status.accepted_this_round() >= expected) break;
      absl::SleepFor(absl::Milliseconds(20));
    } while (absl::Now() < deadline);
    ASSERT_EQ(status.accepted_this_round(), expected) << "round " << round;
    fedcl::v1::ReportShardResponse reported;
    ASSERT_TRUE(f.ReportShard(round, &reported).ok());
    ASSERT_EQ(reported.round(), round + 1);
  }
  for (auto& client : clients) client->Signal(SIGTERM);
  for (auto& client : clients) EXPECT_EQ(*client->Wait(absl::Seconds(20)), 0);
  ASSERT_TRUE(f.Status(&status).ok());  // final: no client is mid-round any more

  // Accuracy of the published modules.
  std::map<std::string, std::vector<float>> final_modules;
  for (const fedcl::v1::ModuleVersion& m : status.modules()) {
    auto values = f.DownloadModule(0, m.name(), m.version());
    ASSERT_TRUE(values.ok()) << values.status();
    final_modules[m.name()] = *values;
  }
  const double trained = Accuracy(served, specs, final_modules);
  RecordProperty("baseline_accuracy", absl::StrCat(baseline));
  RecordProperty("federated_accuracy", absl::StrCat(trained));
  EXPECT_GT(trained, baseline + 0.2) << "baseline " << baseline << ", federated " << trained;
  EXPECT_GT(status.evaluated_accuracy(), baseline + 0.2) << "the server's own evaluation";

  // FedAU: rebuild each client's participation from its own log and compare.
  const std::regex joined_re(R"(joined: enrolled at round (\d+))");
  const std::regex round_re(
      R"(round (\d+): \d+ samples, loss [0-9.]+, weight ([0-9.]+), duplicate no)");
  std::map<uint64_t, const fedcl::v1::ClientSummary*> reported;
  for (const auto& summary : status.clients()) reported[summary.client_id()] = &summary;
  int participants_seen = 0;
  for (int c = 0; c < kClients; ++c) {
    const std::string log = ReadText(absl::StrCat(f.dir(), "/client-", c, ".log"));
    std::smatch m;
    ASSERT_TRUE(std::regex_search(log, m, joined_re)) << log;
    fl::FedAuClientState state = fl::FedAuEnrol(std::stoll(m[1]));
    int participations = 0;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), round_re);
         it != std::sregex_iterator(); ++it) {
      const int64_t round = std::stoll((*it)[1]);
      const double logged_weight = std::stod((*it)[2]);
      // The weight applied to every acknowledged update is the estimator's for that round...
      EXPECT_NEAR(logged_weight, fl::FedAuWeightAt(state, round, fl::kFedAuNoCutoff), 1e-4)
          << "client " << c << " round " << round;
      // ...and the server records participation when the round closes, so the state it reports
      // covers the closed rounds only.
      if (round >= status.round()) continue;
      ASSERT_TRUE(fl::FedAuParticipate(state, round, fl::kFedAuNoCutoff).ok());
      ++participations;
    }
    ASSERT_TRUE(reported.count(c)) << "client " << c;
    const fedcl::v1::ClientSummary& s = *reported[c];
    EXPECT_EQ(s.participations(), participations) << "client " << c;
    EXPECT_EQ(s.intervals(), state.intervals) << "client " << c;
    EXPECT_NEAR(s.mean_interval(), state.mean_interval(), 1e-9) << "client " << c;
    EXPECT_NEAR(s.current_weight(), fl::FedAuWeightAt(state, status.round(), fl::kFedAuNoCutoff),
                1e-9)
        << "client " << c;
    participants_seen += participations > 0;
  }
  EXPECT_EQ(participants_seen, kClients);
}

// Asynchronous rounds with real processes: a fedcl-server with the fedbuff policy (K = 4) and
// eight fedcl-client devices whose training takes 1x to 8x as long (--throttle_ms_per_sample).
// What is asserted does not depend on timing: every device's four updates are acknowledged and
// counted exactly once (the server's participation counts, its metrics lines and the devices'
// logs agree), no update is later than max_staleness, and the model beats the frozen backbone.
// How late the slow devices' updates were is recorded, not asserted.
TEST(FederationTest, EightDevicesOfOneToEightTimesTheSpeedFillBuffersAsynchronously) {
  if (!base::FileSystem::Default().Exists(kFashionMnist)) GTEST_SKIP() << "no Fashion-MNIST";
  constexpr int kUpdatesPerDevice = 4;
  ServerFixture f;
  const std::string backbone = f.dir() + "/pretrained.ckpt";
  ASSERT_NO_FATAL_FAILURE(PretrainHalfTheClasses(f, backbone));
  // The deadline only flushes the last, partial buffer once the fast devices have finished.
  f.WriteRawConfig(absl::StrCat(f.TlsConfigHead(backbone),
                                "module { name: \"head\" role: \"head\" }\n",
                                "recipe { local_steps: 10 batch_size: 32 learning_rate: 0.1 }\n",
                                "round { duration_ms: 1500 policy: \"fedbuff\" ",
                                "options: \"buffer_size: 4 max_staleness: 8\" }\n"));
  f.StartServer();
  const std::map<std::string, fl::ModuleSpec> specs = {
      {"head", {"head", fl::ModuleRole::kHead, {}}}};
  auto initial = f.DownloadModule(0, "head", 0);
  ASSERT_TRUE(initial.ok()) << initial.status();
  const std::string served = f.dir() + "/state/backbone.ckpt";

  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (int c = 0; c < kClients; ++c) {
    // 320 samples a round: 0.16 s of throttle for device 0, 1.28 s for device 7.
    auto client = ChildProcess::Start(
        {BinaryPath("fedcl-client"), "--server=" + f.address(),
         "--tls_ca=" + f.dir() + "/tls/ca.pem", "--tls_server_name=localhost",
         absl::StrCat("--client_id=", c), "--token_file=" + f.TokenFile(c),
         absl::StrCat("--state_dir=", f.dir(), "/client-", c),
         absl::StrCat("--data_dir=", kFashionMnist), "--partition=dirichlet",
         "--dirichlet_alpha=0.5", absl::StrCat("--num_partitions=", kClients),
         absl::StrCat("--throttle_ms_per_sample=", 0.5 * (c + 1)), "--max_poll=200ms",
         "--max_samples=20000", absl::StrCat("--rounds=", kUpdatesPerDevice), "--duration=3m"},
        absl::StrCat(f.dir(), "/client-", c, ".log"));
    ASSERT_TRUE(client.ok());
    clients.push_back(*std::move(client));
  }
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(*clients[c]->Wait(absl::Seconds(180)), 0)
        << ReadText(absl::StrCat(f.dir(), "/client-", c, ".log"));
  }
  // Every update acknowledged is in a closed buffer once the last partial one has flushed.
  fedcl::v1::GetStatusResponse status;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(f.Status(&status).ok());
  } while (status.accepted_this_round() > 0 && absl::Now() < deadline);
  ASSERT_EQ(status.accepted_this_round(), 0) << "the last buffer did not flush";

  const std::regex round_re(
      R"(round (\d+): \d+ samples, loss [0-9.]+, weight [0-9.]+, duplicate (yes|no))");
  std::map<uint64_t, int64_t> server_participations;
  for (const auto& summary : status.clients()) {
    server_participations[summary.client_id()] = summary.participations();
  }
  for (int c = 0; c < kClients; ++c) {
    const std::string log = ReadText(absl::StrCat(f.dir(), "/client-", c, ".log"));
    int acknowledged = 0;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), round_re);
         it != std::sregex_iterator(); ++it) {
      ++acknowledged;
    }
    EXPECT_EQ(acknowledged, kUpdatesPerDevice) << "client " << c << "\n" << log;
    EXPECT_EQ(server_participations[c], kUpdatesPerDevice) << "client " << c;
  }
  // The metrics lines: one per buffer, K updates each but the deadline-flushed ones.
  const std::string metrics = ReadText(f.dir() + "/state/metrics.jsonl");
  const std::regex line_re(
      R"re("participants":(\d+).*"staleness_mean":([0-9.e+-]+|null),"staleness_max":(\d+))re");
  int64_t counted = 0, late = 0, buffers = 0, staleness_max = 0;
  double staleness_sum = 0.0;
  for (auto it = std::sregex_iterator(metrics.begin(), metrics.end(), line_re);
       it != std::sregex_iterator(); ++it) {
    const int64_t participants = std::stoll((*it)[1]);
    EXPECT_LE(participants, 4);
    counted += participants;
    ++buffers;
    if ((*it)[2] != "null") staleness_sum += std::stod((*it)[2]) * participants;
    staleness_max = std::max<int64_t>(staleness_max, std::stoll((*it)[3]));
    late += std::stoll((*it)[3]) > 0;
  }
  EXPECT_EQ(counted, kClients * kUpdatesPerDevice) << metrics;
  EXPECT_LE(staleness_max, 8);
  RecordProperty("buffers", absl::StrCat(buffers));
  RecordProperty("buffers_with_late_updates", absl::StrCat(late));
  RecordProperty("staleness_mean", absl::StrCat(staleness_sum / std::max<int64_t>(counted, 1)));
  RecordProperty("staleness_max", absl::StrCat(staleness_max));

  std::map<std::string, std::vector<float>> final_modules;
  for (const fedcl::v1::ModuleVersion& m : status.modules()) {
    auto values = f.DownloadModule(0, m.name(), m.version());
    ASSERT_TRUE(values.ok()) << values.status();
    final_modules[m.name()] = *values;
  }
  const double baseline = Accuracy(served, specs, {{"head", *initial}});
  const double trained = Accuracy(served, specs, final_modules);
  RecordProperty("baseline_accuracy", absl::StrCat(baseline));
  RecordProperty("federated_accuracy", absl::StrCat(trained));
  EXPECT_GT(trained, baseline + 0.1) << "baseline " << baseline << ", federated " << trained;
}

}  // namespace
}  // namespace fedcl::testing
